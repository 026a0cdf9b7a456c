"""Short forms that fit a terminal column: sizes, durations, credits."""

from __future__ import annotations

from hearth.public_swarm.ledger.rules import format_credits


def size(n: int | None) -> str:
    """1_500_000_000 -> '1.5G' (decimal, like `hearth peers`); None -> '-'."""
    if n is None:
        return "-"
    for unit, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n}B"


def millis(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.1f}s" if ms >= 10_000 else f"{ms:.0f}ms"


def credits(micro: int | None) -> str:
    return "-" if micro is None else format_credits(micro)


def fit(text: str, width: int) -> str:
    """`text` cut or padded to exactly `width` cells (an ellipsis marks a cut)."""
    if len(text) > width:
        return text[: max(width - 1, 0)] + "…"
    return text.ljust(width)


def bar(used: int | None, total: int | None, width: int) -> tuple[int, int]:
    """How many of `width` cells are used and how many free, of a `total` budget."""
    if not total or used is None:
        return 0, 0
    filled = round(width * min(used, total) / total)
    return filled, width - filled
