"""OpenAI's logprobs shapes from the engine's Token events (pure).

A Token carries, per id, its logprob, its bytes (one character per byte), and the best
alternatives' logprobs and bytes (hearth.engine.events.Token). Chat completions list an object
per token (`choices[].logprobs.content`); legacy completions four parallel lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hearth.engine.events import Token


def _raw(piece: str) -> bytes:
    return piece.encode("latin-1")


def _text(piece: str) -> str:
    return _raw(piece).decode("utf-8", errors="replace")


def chat_content(tokens: Iterable[Token]) -> list[dict[str, Any]]:
    """`choices[].logprobs.content` of a chat completion (or of one streamed chunk)."""
    out = []
    for tok in tokens:
        for lp, piece, tops, top_pieces in zip(tok.logprobs, tok.pieces, tok.top_logprobs, tok.top_pieces,
                                               strict=True):
            out.append({"token": _text(piece), "logprob": lp, "bytes": list(_raw(piece)),
                        "top_logprobs": [{"token": _text(p), "logprob": t, "bytes": list(_raw(p))}
                                         for t, p in zip(tops, top_pieces, strict=True)]})
    return out


def completion_logprobs(tokens: Iterable[Token], offset: int = 0) -> dict[str, Any]:
    """`choices[].logprobs` of a legacy completion: tokens, token_logprobs, top_logprobs (a dict
    per token, token text to logprob) and text_offset (each token's start in the choice's text,
    from `offset`: the echoed prompt's length, or what earlier chunks sent)."""
    texts: list[str] = []
    lps: list[float] = []
    tops: list[dict[str, float]] = []
    offsets: list[int] = []
    at = offset
    for tok in tokens:
        for lp, piece, top, top_pieces in zip(tok.logprobs, tok.pieces, tok.top_logprobs, tok.top_pieces,
                                              strict=True):
            text = _text(piece)
            texts.append(text)
            lps.append(lp)
            tops.append({_text(p): t for t, p in zip(top, top_pieces, strict=True)})
            offsets.append(at)
            at += len(text)
    return {"tokens": texts, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}
