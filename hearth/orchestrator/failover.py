"""What the streams of one pooled engine share when it dies: the loss they recover from, merged
with an earlier one not yet told, and the one `failover` event that tells it. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Loss:
    """A pooled engine that died: every stream on it resumes after it, and the first stream to go
    on tells it (`told`), so one loss makes one event however many streams it cut."""

    t_crash: float
    lost: set[str]
    """The ids of the nodes dropped from the placement."""
    names: dict[str, str] = field(default_factory=dict)
    """Their names as people know them, taken before the survey drops them."""
    told: bool = False


def next_loss(earlier: Loss | None, t_crash: float, lost: set[str], names: dict[str, str]) -> Loss:
    """The loss to tell after a new one: when the earlier loss was not told yet (the streams were
    lost again before they went on), one loss counted from the first, with the nodes of both."""
    if earlier is not None and not earlier.told:
        earlier.told = True  # told as part of the new one
        return Loss(earlier.t_crash, earlier.lost | lost, {**earlier.names, **names})
    return Loss(t_crash, lost, names)


def failover_event(loss: Loss, now: float, stalled_since: float | None, recoveries: int) -> tuple[str, dict[str, Any]]:
    """The `failover` event's message and fields: how long the failover took from the moment the
    loss was seen (`ms`), how long the reader waited between two tokens (`stalled_ms`), and what
    was lost (the message names the nodes as people know them; `lost` keeps their ids)."""
    ms = round((now - loss.t_crash) * 1000)
    stalled = round((now - stalled_since) * 1000) if stalled_since is not None else ms
    ids = ",".join(sorted(loss.lost))[:200] or "none"
    said = ", ".join(sorted(loss.names.get(n, n) for n in loss.lost))[:200] or "no node"
    return (f"failover took {ms} ms (lost: {said}); the stream waited {stalled} ms",
            {"ms": ms, "stalled_ms": stalled, "lost": ids, "recoveries": recoveries})
