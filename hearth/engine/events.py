"""What the engine child tells its parent, as typed values with one codec.

The wire format is one JSON object per line, {"event": KIND, **fields} (hearth.engine.protocol
frames it). `decode` checks the kind, that every field is there with its type and nothing else
is, and the line's size; so the supervisor, the pool, the server and the CLI match on a class
and read typed fields, and a malformed line fails once, here, with a message that says why.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Literal, TypeAlias, Union, get_args, get_origin, get_type_hints

from hearth.engine.protocol import ProtocolError, dump_line, load_object

MAX_LINE = 16 * 1024 * 1024
"""Longest event line; the longest real one is a group of embedding vectors."""

FinishReason: TypeAlias = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class Progress:
    """Loading the model: the fraction done so far, 0..1."""

    kind: ClassVar[str] = "progress"
    fraction: float


@dataclass(frozen=True)
class Ready:
    """The model is loaded; requests may follow: up to `parallel` at once, each with a context
    window of `n_ctx` tokens."""

    kind: ClassVar[str] = "ready"
    pid: int
    n_ctx: int
    load_ms: float
    parallel: int = 1


@dataclass(frozen=True)
class Fatal:
    """The model could not be loaded; the child exits after this."""

    kind: ClassVar[str] = "fatal"
    message: str


@dataclass(frozen=True)
class Start:
    """Generation began: the prompt fits and has this many tokens."""

    kind: ClassVar[str] = "start"
    id: str
    prompt_tokens: int


@dataclass(frozen=True)
class Token:
    """Text of a reply and the token ids it covers (empty for text a resumed reply re-sends),
    so that a failed-over reply can resume from exactly these ids."""

    kind: ClassVar[str] = "token"
    id: str
    text: str
    ids: tuple[int, ...]
    logprobs: tuple[float, ...] = ()
    """When the request asked (its `logprobs` field): each id's logprob (hearth.engine.logprobs)."""
    pieces: tuple[str, ...] = ()
    """Each id's bytes, one character per byte (latin-1), as a token may be part of a character."""
    top_logprobs: tuple[tuple[float, ...], ...] = ()
    """Per id, the logprobs of the most likely tokens at its step, best first."""
    top_pieces: tuple[tuple[str, ...], ...] = ()
    """Their bytes, as `pieces`."""


@dataclass(frozen=True)
class Done:
    """A completion ended; its last event."""

    kind: ClassVar[str] = "done"
    id: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float
    total_ms: float
    decode_tokens_per_s: float | None
    cached_tokens: int = 0
    """Prompt tokens reused from the cache an earlier request left in the slot."""


@dataclass(frozen=True)
class Vectors:
    """One group of embeddings, for inputs index, index + 1, ..."""

    kind: ClassVar[str] = "vectors"
    id: str
    index: int
    data: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class Embedding:
    """An embed request ended; its last event."""

    kind: ClassVar[str] = "embedding"
    id: str
    prompt_tokens: int


@dataclass(frozen=True)
class Scored:
    """A score request's result, before its Done: for each given token id in order, its rank among
    the logits at that step (0: the greedy choice; top_k: not among the best top_k) and the best
    logit minus its logit (>= 0); `text` is the ids' detokenisation as generate would stream it.
    `picks` (a replay only): the token the request's seeded sampler chose at each step."""

    kind: ClassVar[str] = "scored"
    id: str
    prompt_tokens: int
    ranks: tuple[int, ...]
    gaps: tuple[float, ...]
    text: str
    picks: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Error:
    """A request failed (id None: a request line the child could not read). `code` names the
    kind: context_length_exceeded, invalid_request, engine_error, protocol."""

    kind: ClassVar[str] = "error"
    id: str | None
    code: str
    message: str
    param: str | None = None
    """The request field at fault, if one is."""


ReplyEvent: TypeAlias = Start | Token | Scored | Done | Vectors | Embedding
"""What a request yields to its caller (an Error is raised instead)."""
EngineEvent: TypeAlias = Progress | Ready | Fatal | ReplyEvent | Error
KINDS: tuple[type[EngineEvent], ...] = (Progress, Ready, Fatal, Start, Token, Scored, Done, Vectors, Embedding,
                                        Error)

Check = Callable[[Any, str], Any]


def _fail(where: str, expected: str, value: Any) -> ProtocolError:
    return ProtocolError(f"{where} should be {expected}, not {type(value).__name__}")


def _check_str(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    raise _fail(where, "a string", value)


def _check_int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _fail(where, "an integer", value)


def _check_float(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise _fail(where, "a finite number", value)


def _checker(tp: Any) -> Check:
    """A function that validates (and converts, JSON list -> tuple) a value of type tp; only the
    types the events above use are supported."""
    simple: dict[Any, Check] = {str: _check_str, int: _check_int, float: _check_float}
    if tp in simple:
        return simple[tp]
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        def literal(value: Any, where: str) -> Any:
            if isinstance(value, str) and value in args:
                return value
            raise ProtocolError(f"{where} should be one of {list(args)}, not {value!r:.40}")
        return literal
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _checker(next(a for a in args if a is not type(None)))
        return lambda value, where: None if value is None else inner(value, where)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _checker(args[0])

        def sequence(value: Any, where: str) -> tuple[Any, ...]:
            if not isinstance(value, list):
                raise _fail(where, "a list", value)
            each = where + "[]"
            return tuple(item(v, each) for v in value)
        return sequence
    raise TypeError(f"no check for {tp!r}")


@dataclass(frozen=True)
class _Spec:
    make: Callable[..., EngineEvent]
    checks: dict[str, Check]
    defaults: dict[str, Any]
    """Fields that may be left out of a line, and their values then (left out when they have them)."""


_SPECS: dict[str, _Spec] = {
    cls.kind: _Spec(cls, {f.name: _checker(get_type_hints(cls)[f.name]) for f in fields(cls)},
                    {f.name: f.default for f in fields(cls) if f.default is not MISSING}) for cls in KINDS
}


def encode(event: EngineEvent) -> bytes:
    """One JSON line; ValueError if a number is NaN or infinite (JSON has neither). A field at its
    default is left out (a token without logprobs is the line it always was)."""
    spec = _SPECS[event.kind]
    values = {name: getattr(event, name) for name in spec.checks}
    return dump_line({"event": event.kind, **{k: v for k, v in values.items()
                                              if k not in spec.defaults or v != spec.defaults[k]}},
                     allow_nan=False)


def decode(line: bytes | str) -> EngineEvent:
    """The event on one line, or ProtocolError saying what is wrong with it."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"an event line of {len(line)} bytes is over the limit of {MAX_LINE}")
    msg = load_object(line, allow_nan=False)
    kind = msg.pop("event", None)
    spec = _SPECS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ProtocolError(f"unknown event {kind!r:.40}; expected one of {sorted(_SPECS)}")
    missing = sorted(spec.checks.keys() - msg.keys() - spec.defaults.keys())
    extra = sorted(msg.keys() - spec.checks.keys())
    if missing or extra:
        raise ProtocolError(f"a {kind!r} event " + "; ".join(
            ([f"lacks {', '.join(missing)}"] if missing else []) +
            ([f"has unknown fields {', '.join(x[:40] for x in extra[:5])}"] if extra else [])))
    return spec.make(**{name: check(msg[name], f"{kind}.{name}") for name, check in spec.checks.items()
                        if name in msg})
