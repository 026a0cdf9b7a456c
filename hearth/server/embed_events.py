"""The vectors of an embed request, gathered from the engine's events (OpenAI's and Ollama's routes)."""

from __future__ import annotations

import contextlib

from hearth.engine.events import Embedding, Vectors
from hearth.errors import EngineFailed
from hearth.server.streaming import Events


async def embed_all(events: Events) -> tuple[list[list[float]], int]:
    """The vectors of an embed request, in input order, and its prompt tokens."""
    vectors: list[list[float]] = []
    async with contextlib.aclosing(events):
        async for ev in events:
            if isinstance(ev, Vectors):
                vectors.extend(list(v) for v in ev.data)
            elif isinstance(ev, Embedding):
                return vectors, ev.prompt_tokens
    raise EngineFailed("The engine returned no embedding.")
