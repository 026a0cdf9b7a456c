"""Shared by the dispatcher's tests: a model offer, links that hold it (no socket), a request."""

from __future__ import annotations

from typing import Any, cast

from hearth.errors import QueueFull
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


class FreeAllowanceUsed(QueueFull):
    """The stand-in's refusal (429), as coordinator.allowance's FreeAllowanceUsed."""

    code = "free_allowance_used"


class Allowance:
    """A stand-in for coordinator.allowance.Allowance (helper "jobs" builds it, in parallel): tokens
    per address, in memory."""

    def __init__(self, tokens: int) -> None:
        self.left: dict[str, int] = {}
        self.tokens = tokens

    def take(self, address: str, tokens: int) -> None:
        left = self.left.get(address, self.tokens)
        if tokens > left:
            raise FreeAllowanceUsed(f"{address} has {left} free tokens left today; this needs {tokens}.")
        self.left[address] = left - tokens

    def give_back(self, address: str, tokens: int) -> None:
        self.left[address] = self.left.get(address, self.tokens) + tokens
