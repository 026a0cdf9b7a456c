"""The dispatcher's pure rules: served models, picking one, what a job holds and who is paid; the
swarm's throughput counter; and the ledger's split settle (hypothesis: the books always balance)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.errors import InvalidRequest
from hearth.public_swarm.coordinator import dispatch_rules as D
from hearth.public_swarm.coordinator.stats import SwarmStats
from hearth.public_swarm.ledger import rules
from hearth.public_swarm.ledger.errors import HoldClosed, LedgerInputInvalid
from hearth.public_swarm.protocol.messages import ModelOffer
from tests.public_swarm.dispatch_kit import DIGEST, MODEL, PRICE, chat


def test_served_models_group_by_digest_and_skip_unpriced() -> None:
    small = MODEL.model_copy(update={"n_ctx": 1024})
    odd = ModelOffer(digest="cd" * 32, name="odd", params=10, quant="IQ9_XX", n_ctx=64, decode_tps=1.0)
    models = D.served_models([(MODEL,), (small, odd), (MODEL, MODEL)])
    assert [(m.digest, m.workers, m.n_ctx, m.price) for m in models] == [(DIGEST, 3, 1024, PRICE)]


def test_pick_by_name_digest_and_the_two_refusals() -> None:
    models = D.served_models([(MODEL,)])
    assert D.pick(models, "qwen2.5-0.5b-instruct").digest == DIGEST
    assert D.pick(models, "QWEN2.5-0.5B-Instruct").digest == DIGEST
    assert D.pick(models, f"sha256:{DIGEST}").name == MODEL.name
    with pytest.raises(D.NoWorker):
        D.pick(models, "sha256:" + "0" * 64)
    with pytest.raises(D.NoWorker):
        D.pick([], "qwen2.5-0.5b-instruct", known={"qwen2.5-0.5b-instruct"})
    with pytest.raises(D.ModelNotServed) as e:
        D.pick(models, "gpt-4")
    assert e.value.http_status == 404 and e.value.code == "model_not_served"
    for bad in ("", "sha256:xyz", 5, "x" * 300):
        with pytest.raises(InvalidRequest):
            D.pick(models, bad)


def test_prompt_cap_bounds_the_bytes() -> None:
    assert D.prompt_cap(chat("é" * 10)) == 20 + D.PER_MESSAGE_TOKENS + D.TEMPLATE_TOKENS


def test_spec_round_trips_without_resume() -> None:
    spec = D.JobSpec(chat(), "chat", "m", 5, 40, "10.0.0.1")
    back = D.JobSpec.from_json(spec.to_json())
    assert back == spec and back.allowance_tokens == 40 + 16
    with pytest.raises(InvalidRequest):
        D.JobSpec.from_json({"v": 1})


def test_free_account_is_an_account_and_no_node_id() -> None:
    account = D.free_account("2001:db8::1")
    assert rules.check_account(account) == account and account.startswith("free.")


@given(st.lists(st.tuples(st.sampled_from(["aaa", "bbb", "ccc"]), st.integers(0, 50)), max_size=6),
       st.integers(1, 1000), st.integers(0, 100), st.integers(0, 200))
def test_payouts_pay_parts_and_the_prompt_never_past_max_tokens(parts: list[tuple[str, int]], price: int,
                                                                 prompt: int, max_tokens: int) -> None:
    paid = D.payouts(parts, price, prompt_tokens=prompt, finisher="ccc", max_tokens=max_tokens)
    streamed = min(sum(n for _, n in parts), max_tokens)
    assert sum(paid.values()) == (streamed + prompt) * price
    assert all(v > 0 for v in paid.values())


def test_stats_window_and_series() -> None:
    now = [6000.0]
    s = SwarmStats(minutes=3, clock=lambda: now[0])
    s.record(30, at=5990.0)
    s.record(60)
    s.record(0)
    assert s.tokens_per_s(60) == 90 / 60
    assert s.series() == [(5880, 0), (5940, 30), (6000, 60)]
    now[0] = 6000.0 + 400
    s.record(1)
    assert s.tokens_per_s(60) == 1 / 60 and s.total == 91
    assert s.series()[-1][1] == 1 and sum(n for _, n in s.series()) == 1


amounts = st.integers(1, 10**9)


@given(amounts, st.dictionaries(st.sampled_from(["w1aa", "w2bb", "w3cc", "asker"]), st.integers(0, 10**9),
                                max_size=4))
def test_split_settle_balances_and_never_exceeds_the_hold(amount: int, paid: dict[str, int]) -> None:
    hold = rules.Hold("h0000001", "asker", amount, 100.0)
    try:
        closed, settlement, entries = rules.plan_settle_split(hold, hold.id, paid)
    except LedgerInputInvalid:
        assert sum(paid.values()) > amount or paid.get("asker", 0) > 0
        return
    before = {"asker": 0, rules.escrow_account(hold.id): amount}
    after = rules.balances(entries)
    assert sum(after.values()) == 0
    assert -after[rules.escrow_account(hold.id)] == amount == settlement.served + settlement.returned
    assert settlement.served == sum(paid.values()) <= amount and closed.state is rules.HoldState.SETTLED
    assert all(before.get(e.debit, 0) >= 0 for e in entries)
    with pytest.raises(HoldClosed):
        rules.plan_settle_split(closed, hold.id, paid)


def test_the_welcome_memo_stays_bounded_and_the_ledger_still_welcomes_once(tmp_path: Path) -> None:
    """A stream of fresh identities must not grow the coordinator's memory without bound; one
    forgotten by the memo is asked again and the ledger replays its one welcome."""
    import asyncio

    from hearth.public_swarm.coordinator.app import Welcomer
    from hearth.public_swarm.ledger.db import Ledger

    with Ledger.open(f"sqlite:///{tmp_path / 'l.db'}", welcome=5) as ledger:
        welcomer = Welcomer(ledger, kept=3)
        names = [f"acct{i:03d}" for i in range(6)]
        for name in [*names, names[0]]:
            asyncio.run(welcomer(name))
        assert len(welcomer.welcomed) == 3
        assert all(ledger.balance(n) == 5 for n in names)
        assert ledger.audit() == []
