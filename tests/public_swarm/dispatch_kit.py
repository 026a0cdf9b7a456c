"""Shared by the dispatcher's tests: a model offer, links that hold it (no socket), a request."""

from __future__ import annotations

from typing import Any, cast

from hearth.public_swarm.coordinator.links import Link, LiveLinks
from hearth.public_swarm.protocol.coordinator import CoordinatorSession
from hearth.public_swarm.protocol.messages import ChatMessage, JobRequest, ModelOffer

DIGEST = "ab" * 32
MODEL = ModelOffer(digest=DIGEST, name="qwen2.5-0.5b-instruct", params=494_000_000, quant="Q4_K_M",
                   n_ctx=4096, decode_tps=40.0)
PRICE = 599
"""MODEL's price in credits per million tokens (pricing's formula)."""


def links_with(*workers: tuple[str, tuple[ModelOffer, ...]]) -> LiveLinks:
    """LiveLinks whose table lists these (node id, models) as linked; nothing is connected."""
    links = LiveLinks()
    for node_id, models in workers:
        links.by_node[node_id] = Link(CoordinatorSession(0.0), cast(Any, None), "127.0.0.1", 0.0, models=models)
    return links


def chat(text: str = "Why is the sky blue?", max_tokens: int = 16) -> JobRequest:
    return JobRequest(messages=[ChatMessage(role="user", content=text)], max_tokens=max_tokens)
