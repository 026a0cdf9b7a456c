"""Sizes people type (`--max-memory 12G`) and sizes people read."""

from __future__ import annotations

import re

from hearth.errors import InvalidRequest

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """'12G', '12GB' and '12 gb' are 12 * 10^9 bytes; '12GiB' is 12 * 2^30; a bare number is bytes."""
    m = _SIZE_RE.match(text)
    if not m:
        raise InvalidRequest(f"{text!r} is not a size; write it like 12G, 512M or 1.5GiB.")
    number, unit, suffix = float(m.group(1)), m.group(2).lower(), m.group(3).lower()
    base = 1024 if suffix.startswith("i") else 1000
    if suffix.startswith("i") and not unit:
        raise InvalidRequest(f"{text!r} is not a size; write it like 12G, 512M or 1.5GiB.")
    return int(number * base ** _POWERS[unit])


def human(n: int) -> str:
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def digits(text: str) -> bool:
    """ASCII decimal digits only: str.isdigit() also accepts '²' (which int() refuses) and '٣'."""
    return text.isascii() and text.isdigit()
