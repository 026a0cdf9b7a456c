"""Messages between the supervisor and the engine child: one JSON object per line.

Parent -> child: {"op": "complete"|"chat"|"embed"|"cancel", "id": str, ...}
Child -> parent: {"event": "progress"|"ready"|"start"|"token"|"done"|"vectors"|"embedding"|"error"|"fatal",
                  "id": ...}
"""

from __future__ import annotations

import json
from typing import Any

OPS = frozenset({"complete", "chat", "embed", "cancel"})
EVENTS = frozenset({"progress", "ready", "start", "token", "done", "vectors", "embedding", "error",
                    "fatal"})


class ProtocolError(ValueError):
    """A line that is not a well-formed message."""


def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes, allowed: frozenset[str], key: str) -> dict[str, Any]:
    try:
        msg = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(msg, dict) or msg.get(key) not in allowed:
        raise ProtocolError(f"expected an object with {key!r} in {sorted(allowed)}")
    return msg
