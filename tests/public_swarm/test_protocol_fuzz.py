"""Hypothesis drives the coordinator's session (hearth.public_swarm.protocol.coordinator) with
arbitrary sequences: good and bad hellos, offers, cancels, clock ticks, answers, Tokens with right
and wrong seq numbers, Finished with genuine, forged, miscounted and junk receipts, raw junk frames
and any message of either direction. It must never raise, close at most once and then stay quiet,
send only coordinator messages, and never report a finished job whose receipt does not verify
against the worker's key, the job's prompt and exactly the text it streamed."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hearth.net import b64
from hearth.public_swarm import receipts
from hearth.public_swarm.protocol import messages as m
from hearth.public_swarm.protocol.actions import Action, Close, JobDeclined, JobFinished, JobOffered, JobTokens, Send
from hearth.public_swarm.protocol.coordinator import CoordinatorSession
from hearth.public_swarm.protocol.worker import WorkerSession
from tests.public_swarm.protocol_kit import DIGEST, MODEL, NONCE, OTHER, WORKER, any_message

JOBS = ("j0", "j1", "j2")
job = st.sampled_from((*JOBS, *["open"] * 12))
"""A job id, or "open": a job id that makes sense for the step (a free one to offer, a pending one to answer,
an accepted one to stream or finish), so that scripts often get far."""
sensible = st.one_of(
    st.tuples(st.just("offer"), job, st.integers(1, 6)),
    st.tuples(st.just("accept"), job),
    st.tuples(st.just("tokens"), job, st.sampled_from([0, 0, 0, 0, -1, 1]), st.integers(1, 3), st.text(max_size=6)),
    st.tuples(st.just("finish"), job, st.sampled_from(["none", "none", "none", "key", "count", "output", "job",
                                                       "prompt", "finished_count", "junk"])),
    st.tuples(st.just("tick"), st.floats(0, 1.5)),
)
rare = st.one_of(
    st.tuples(st.just("hello"), st.sampled_from(["good", "version", "forged"])),
    st.tuples(st.just("cancel"), job),
    st.tuples(st.just("decline"), job),
    st.tuples(st.just("tick"), st.floats(0, 5)),
    st.tuples(st.just("failed"), job),
    st.tuples(st.just("raw"), st.text(max_size=60)),
    st.tuples(st.just("message"), any_message),
)
ops = st.integers(0, 19).flatmap(lambda n: rare if n == 0 else sensible)
"""Mostly steps that make sense, so scripts get as far as a finished job; one in twenty is anything."""


class Shadow:
    """What the fuzz test has seen the coordinator accept, to build plausible next messages and to
    check what it reports."""

    def __init__(self) -> None:
        self.offers: dict[str, m.Offer] = {}
        self.text: dict[str, list[str]] = {}
        self.ids: dict[str, list[int]] = {}

    def offered(self, o: m.Offer) -> None:
        self.offers[o.job_id], self.text[o.job_id], self.ids[o.job_id] = o, [], []

    def finished_message(self, j: str, how: str) -> m.Finished:
        o = self.offers.get(j) or _offer(j, 4)
        output = "".join(self.text.get(j, []))
        n = len(self.ids.get(j, []))
        fields: dict[str, Any] = dict(job_id=j, model_digest=o.model_digest, prompt=m.prompt_bytes(o.request),
                                      output=output, prompt_tokens=7, completion_tokens=n, finished_at=1)
        signer = OTHER if how == "key" else WORKER
        fields.update({"count": {"completion_tokens": n + 1}, "output": {"output": output + "!"},
                       "job": {"job_id": "zz"}, "prompt": {"prompt": b"other"}}.get(how, {}))
        text = "{}" if how == "junk" else receipts.encode(receipts.sign_receipt(signer, **fields)).decode()
        return m.Finished(job_id=j, finish_reason="stop", prompt_tokens=7,
                          completion_tokens=n + (how == "finished_count"), receipt=text)


def _offer(j: str, max_tokens: int) -> m.Offer:
    return m.Offer(job_id=j, model_digest=DIGEST, request=m.JobRequest(prompt=f"prompt for {j}", max_tokens=max_tokens))


def _hello(how: str) -> m.Hello:
    signer = OTHER if how == "forged" else WORKER
    return m.Hello(v=2 if how == "version" else 1, node_id=WORKER.node_id, public_key=b64.encode(WORKER.public_key),
                   signature=b64.encode(signer.prove(NONCE)), models=[MODEL], max_jobs=2)


def _step(coord: CoordinatorSession, shadow: Shadow, op: tuple[Any, ...], now: float) -> list[Action]:
    kind = op[0]
    if len(op) > 1 and op[1] == "open":
        want = {"offer": None, "accept": False, "decline": False}.get(kind, True)
        fits = [j for j in JOBS if (j not in coord.jobs if want is None else
                                    j in coord.jobs and coord.jobs[j].accepted == want)]
        if fits:
            op = (kind, fits[0], *op[2:])
        else:  # nothing fits: make progress instead, by offering a job
            free = [j for j in JOBS if j not in coord.jobs]
            op = ("offer", free[0] if free else "j0", 4)
            kind = "offer"
    if kind == "hello":
        return coord.receive(_hello(op[1]), now)
    if kind == "offer":
        o = _offer(op[1], op[2])
        actions = coord.offer(o, now)
        if any(isinstance(a, Send) for a in actions):
            shadow.offered(o)
        return actions
    if kind == "cancel":
        return coord.cancel(op[1], now)
    if kind == "tick":
        return coord.tick(now)
    if kind == "accept":
        return coord.receive(m.Accept(job_id=op[1]), now)
    if kind == "decline":
        return coord.receive(m.Decline(job_id=op[1], reason="busy"), now)
    if kind == "tokens":
        _, j, delta, n, text = op
        seq = max(0, len(shadow.text.get(j, [])) + delta)
        return coord.receive(m.Tokens(job_id=j, seq=seq, text=text, token_ids=list(range(n))), now)
    if kind == "finish":
        return coord.receive_text(m.encode(shadow.finished_message(op[1], op[2])), now)
    if kind == "failed":
        return coord.receive(m.Failed(job_id=op[1], code="oom", message="out of memory"), now)
    if kind == "raw":
        return coord.receive_text(op[1], now)
    return coord.receive_text(m.encode(op[1]), now)


@given(st.sampled_from([True, True, True, False]), st.lists(ops, max_size=40))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_coordinator_never_raises_and_never_reports_an_unverified_finish(
        greet: bool, script: list[tuple[Any, ...]]) -> None:
    coord = CoordinatorSession(0.0, heartbeat_s=1.0, nonce=NONCE)
    shadow = Shadow()
    now, closed = 0.0, False
    for op in [("hello", "good"), *script] if greet else script:
        if op[0] == "tick":
            now += op[1]
        actions = _step(coord, shadow, op, now)
        if closed:  # a closed session only hands an offer straight back
            assert actions == [] or (len(actions) == 1 and actions[0] == JobDeclined(actions[0].job_id, "not_ready"))
        for a in actions:
            if isinstance(a, Send):
                assert isinstance(a.message, m.COORDINATOR_MESSAGES)
            elif isinstance(a, JobTokens):
                shadow.text[a.job_id].append(a.text)
                shadow.ids[a.job_id].extend(a.token_ids)
            elif isinstance(a, JobFinished):
                event("a job finished")
                o = shadow.offers[a.job_id]
                receipts.verify(a.receipt, WORKER.public_key, prompt=m.prompt_bytes(o.request),
                                output="".join(shadow.text[a.job_id]))
                assert a.receipt.job_id == a.job_id and a.receipt.model_digest == o.model_digest
                assert a.completion_tokens == a.receipt.completion_tokens == len(shadow.ids[a.job_id])
            elif isinstance(a, Close):
                assert not closed and a is actions[-1]
                event(f"closed: {a.code.name}")
                closed = True


@given(st.lists(st.one_of(any_message.map(m.encode), st.text(max_size=60), st.floats(0, 5)), max_size=30))
@settings(max_examples=300, deadline=None)
def test_worker_never_raises_on_arbitrary_frames(script: list[str | float]) -> None:
    """The worker side, fed a real challenge and welcome then anything: it never raises, closes at
    most once, sends only worker messages, and asks its engine to run only offers it could take."""
    worker = WorkerSession(WORKER, [MODEL], 2, 0.0)
    now, closed = 0.0, False
    first = [m.encode(m.Challenge(v=1, nonce=b64.encode(NONCE))),
             m.encode(m.Welcome(node_id=WORKER.node_id, heartbeat_s=1.0))]
    for frame in [*first, *script]:
        if isinstance(frame, float):
            now += frame
            actions = worker.tick(now)
        else:
            actions = worker.receive_text(frame, now)
            if not closed and isinstance(a0 := (actions[:1] or [None])[0], JobOffered):
                assert a0.offer.model_digest == MODEL.digest and len(worker.jobs) <= 2
                actions += worker.accept(a0.offer.job_id, now)
        assert not closed or actions == []
        for a in actions:
            if isinstance(a, Send):
                assert isinstance(a.message, m.WORKER_MESSAGES)
            closed = closed or isinstance(a, Close)
