"""hearth's port numbers, named once.

They live at the foundation (beside settings, whose defaults use them) rather than in hearth.net,
which sits above settings. Each is a default: settings or a command's option may move it, and the
docs (README, docs/nat-traversal.md) quote these numbers.
"""

from __future__ import annotations

DEFAULT_SERVE_PORT = 11435
"""TCP: `hearth serve`, the OpenAI- and Ollama-compatible endpoint (HEARTH_PORT)."""

DEFAULT_NODE_PORT = 11436
"""TCP: `hearth node`'s control API (the agent peers lease from)."""

DEFAULT_PAIR_PORT = 11437
"""TCP: `hearth pair` waits here for the other machine on the LAN."""

DEFAULT_RENDEZVOUS_PORT = 11438
"""TCP: `hearth rendezvous`, which splices two pairing machines beyond the LAN."""

DEFAULT_COORDINATOR_PORT = 11440
"""TCP: `hearth coordinator`, the public swarm's coordinator (workers register, requesters ask
for credits and, later, jobs). Public-facing: its HTTP API is signed per request."""

DEFAULT_WORKER_PAGE_PORT = 11441
"""TCP, 127.0.0.1 only: `hearth contribute`'s page of what this machine served (counts, no contents)."""

DEFAULT_WG_PORT = 51820
"""UDP: the circle's WireGuard interface (HEARTH_WG_PORT); WireGuard's customary port."""
