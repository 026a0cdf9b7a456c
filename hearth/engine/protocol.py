"""Framing between the supervisor and the engine child: one JSON object per line.

Parent -> child (requests, plain dicts): {"op": "complete"|"chat"|"embed"|"score"|"cancel", "id": str, ...}
Child -> parent (events): typed, see hearth.engine.events, which builds on the framing here.
Both ends always come from the same install, so neither side negotiates versions.
"""

from __future__ import annotations

import json
from typing import Any

OPS = frozenset({"complete", "chat", "embed", "score", "cancel"})


class ProtocolError(ValueError):
    """A line that is not a well-formed message."""


class RequestError(Exception):
    """A request the engine child cannot serve; it answers with an Error event of this code."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        """The request field at fault, if one is (the HTTP error's `param`)."""


def _no_constants(name: str) -> float:
    raise ProtocolError(f"not JSON: {name} is not a number JSON allows")


def dump_line(msg: dict[str, Any], *, allow_nan: bool = True) -> bytes:
    """One compact JSON line. With allow_nan False, NaN and infinities raise ValueError."""
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan).encode() + b"\n"


def load_object(line: bytes | str, *, allow_nan: bool = True) -> dict[str, Any]:
    """The JSON object on one line, or ProtocolError."""
    try:
        msg = json.loads(line, parse_constant=None if allow_nan else _no_constants)
    except ProtocolError:
        raise
    except ValueError as exc:  # bad JSON, bad UTF-8, an integer over Python's digit limit
        raise ProtocolError(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise ProtocolError("not JSON: nested too deeply") from exc
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object, got {type(msg).__name__}")
    return msg


def encode_request(msg: dict[str, Any]) -> bytes:
    return dump_line(msg)


def decode_request(line: bytes | str) -> dict[str, Any]:
    """A request for the child: an object whose 'op' is one of OPS (its fields are checked
    where they are used)."""
    msg = load_object(line)
    if msg.get("op") not in OPS:
        raise ProtocolError(f"expected an object with 'op' in {sorted(OPS)}")
    return msg


SAMPLER_CHAIN = "hearth-k40-p-minp0.05-t-dist.1-fa"
"""The sampler `hearth.engine.sampling.sampler_chain` builds (top-k 40, top-p, min-p 0.05, temperature, seeded draw);
its name changes whenever the chain does, or the logits it reads (`-fa`: computed with flash
attention, as the batched decoder does)."""


def sampler_id() -> str:
    """This engine's sampler and llama.cpp build, as a worker's Hello names it (messages.Hello.sampler):
    two engines with the same id draw the same token from the same logits and seed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        build = version("llama_cpp_python")
    except PackageNotFoundError:
        build = "unknown"
    return f"{SAMPLER_CHAIN}/llama-cpp-python-{build}"[:80]
