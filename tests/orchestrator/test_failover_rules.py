"""The loss the streams of a dead pooled engine share, without an engine: merged with an earlier
one not yet told, told once, with the nodes as people know them."""

from __future__ import annotations

from hearth.orchestrator.failover import Loss, failover_event, next_loss


def test_a_loss_before_the_streams_went_on_is_counted_from_the_first() -> None:
    first = next_loss(None, 10.0, {"n1"}, {"n1": "den"})
    second = next_loss(first, 12.0, {"n2"}, {"n2": "attic"})
    assert first.told  # told as part of the second
    assert second == Loss(10.0, {"n1", "n2"}, {"n1": "den", "n2": "attic"})
    message, data = failover_event(second, 13.5, 9.0, recoveries=2)
    assert message == "failover took 3500 ms (lost: attic, den); the stream waited 4500 ms"
    assert data == {"ms": 3500, "stalled_ms": 4500, "lost": "n1,n2", "recoveries": 2}


def test_a_loss_after_the_streams_went_on_is_a_new_one() -> None:
    first = next_loss(None, 10.0, {"n1"}, {})
    first.told = True
    second = next_loss(first, 20.0, set(), {})
    assert second == Loss(20.0, set(), {})
    message, data = failover_event(second, 20.25, None, recoveries=2)
    assert message == "failover took 250 ms (lost: no node); the stream waited 250 ms"
    assert data["lost"] == "none"
