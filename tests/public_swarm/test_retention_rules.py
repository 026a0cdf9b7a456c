"""Retention's rules (no I/O): when a finished job's text, prompt and token ids are forgotten, and
that a forgotten request still reads as the job's spec (price, prompt cap, kind) with no contents."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.public_swarm.coordinator import retention_rules as P
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.protocol.messages import ChatMessage, JobRequest, Sampling

POLICY = P.Policy(grace_s=600, ttl_s=86_400)


def held(**kw: object) -> P.Held:
    base: dict[str, object] = dict(done=True, ended_at=1000.0, has_text=True, has_prompt=True, delivered=False,
                                   checking=False)
    base.update(kw)
    return P.Held(**base)  # type: ignore[arg-type]


def test_the_prompt_waits_for_the_grace_period_and_an_unfetched_result_for_the_ttl() -> None:
    assert P.plan(held(), POLICY, 1000 + 599) == P.Forget()
    assert P.plan(held(), POLICY, 1000 + 600) == P.Forget(prompt=True)
    assert P.plan(held(has_prompt=False), POLICY, 1000 + 86_399) == P.Forget()
    assert P.plan(held(has_prompt=False), POLICY, 1000 + 86_400) == P.Forget(text=True)


def test_a_failed_or_cancelled_jobs_text_goes_with_its_prompt() -> None:
    assert P.plan(held(done=False), POLICY, 1000 + 10) == P.Forget()
    assert P.plan(held(done=False), POLICY, 1000 + 600) == P.Forget(text=True, prompt=True)


def test_a_delivered_text_goes_at_once_unless_a_check_of_it_is_pending() -> None:
    assert P.on_delivery(held(), POLICY, 1001) == P.Forget(text=True, delivered=True)
    checking = P.on_delivery(held(checking=True), POLICY, 1001)
    assert checking == P.Forget(delivered=True)  # the check compares it with the scorer's text
    assert P.plan(held(checking=True, delivered=True), POLICY, 1100) == P.Forget()
    assert P.plan(held(checking=False, delivered=True), POLICY, 1100) == P.Forget(text=True)
    assert P.plan(held(checking=True, delivered=True), POLICY, 1600) == P.Forget()  # the check reads them all
    assert P.plan(held(checking=True), POLICY, 1000 + 86_400) == P.Forget(text=True, prompt=True)  # at most the TTL
    assert P.on_delivery(held(has_text=False, delivered=True), POLICY, 1001) == P.Forget()


@given(st.floats(0, 200_000), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_nothing_is_forgotten_early_and_nothing_twice(age: float, done: bool, text: bool, prompt: bool,
                                                     delivered: bool, checking: bool) -> None:
    h = held(done=done, has_text=text, has_prompt=prompt, delivered=delivered, checking=checking)
    for forget in (P.plan(h, POLICY, 1000 + age), P.on_delivery(h, POLICY, 1000 + age)):
        assert not forget.prompt or (prompt and age >= POLICY.grace_s)
        assert not forget.text or text
        if forget.text and done and not delivered and age < POLICY.ttl_s:  # only a delivery, unchecked
            assert not P.plan(h, POLICY, 1000 + age).text and not checking
        if age >= POLICY.ttl_s:
            assert P.plan(h, POLICY, 1000 + age).text == text


@pytest.mark.parametrize("request_", [
    JobRequest(messages=[ChatMessage(role="system", content="secret system"),
                         ChatMessage(role="user", content="my secret question")], max_tokens=9,
               sampling=Sampling(temperature=0.5, stop=["secret stop"])),
    JobRequest(prompt="my secret prompt", max_tokens=5),
])
def test_a_scrubbed_request_reads_as_the_same_spec_without_its_contents(request_: JobRequest) -> None:
    spec = JobSpec(request_, "chat", "smollm2", 599, 77, "203.0.113.9")
    scrubbed = P.scrub(spec.to_json())
    again = JobSpec.from_json(scrubbed)
    assert (again.kind, again.model, again.price, again.prompt_cap, again.request.max_tokens) == (
        "chat", "smollm2", 599, 77, request_.max_tokens)
    assert again.free_address is None and scrubbed[P.FORGOTTEN] is True
    assert "secret" not in json.dumps(scrubbed) and "203.0.113" not in json.dumps(scrubbed)
    assert again.request.sampling.temperature == request_.sampling.temperature


def test_policy_from_the_environment_is_checked() -> None:
    assert P.Policy.from_env({}) == P.Policy(P.GRACE_S, P.RESULT_TTL_S)
    assert P.Policy.from_env({P.GRACE_ENV: "5", P.TTL_ENV: "60"}) == P.Policy(5, 60)
    for env in ({P.GRACE_ENV: "soon"}, {P.TTL_ENV: "-1"}, {P.GRACE_ENV: "100", P.TTL_ENV: "10"},
                {P.TTL_ENV: "inf"}, {P.GRACE_ENV: "nan"}):
        with pytest.raises(P.RetentionSettingInvalid):
            P.Policy.from_env(env)
