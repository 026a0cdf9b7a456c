"""Ollama's `keep_alive`: a number of seconds or a Go duration ("5m", "1h30m", "0", "-1")."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_DURATION = re.compile(r"^(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)?$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(value: float | str | None) -> float | None:
    """Ollama's keep_alive in seconds: a number of seconds or a Go duration ("5m", "1h30m", "0");
    a negative one keeps the model loaded for good (float('inf')); None when not given."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("keep_alive is a duration such as \"5m\", a number of seconds, 0 or -1")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text, seconds = value.strip(), 0.0
        parts = re.findall(r"-?\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h)?", text)
        if not text or "".join(parts) != text:
            raise ValueError(f"keep_alive {value!r} is not a duration such as \"5m\", \"1h\", \"0\" or \"-1\"")
        for part in parts:
            m = _DURATION.match(part)
            assert m is not None
            seconds += float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds != seconds or abs(seconds) == float("inf"):
        raise ValueError("keep_alive must be a finite duration")
    return float("inf") if seconds < 0 else seconds


def _valid(value: object) -> object:
    keep_alive_seconds(value)  # type: ignore[arg-type]  # refused unless a number or a string
    return value


KeepAlive = Annotated[float | str | None, BeforeValidator(_valid)]
"""Checked on the way in; the route converts it with keep_alive_seconds."""
