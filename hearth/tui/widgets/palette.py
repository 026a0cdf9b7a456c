"""Colours by theme variable only, so a light theme keeps every panel readable."""

from __future__ import annotations

from textual.markup import escape

NODE_COLOURS = ("$primary", "$success", "$warning", "$secondary", "$accent", "$error")
"""One per node of the layer map, in span order (then again)."""

OK, BAD, WARN, MUTED = "$text-success", "$text-error", "$text-warning", "$text-muted"


def node_colour(index: int) -> str:
    return NODE_COLOURS[index % len(NODE_COLOURS)]


def esc(text: str) -> str:
    """Text from the network shown as itself, never read as markup."""
    return escape(text)
