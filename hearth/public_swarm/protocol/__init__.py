"""The worker ⇄ coordinator protocol of the public swarm (issue 10, "workers dial out"), sans-IO.

`messages` defines every frame and the one codec (`decode`, `encode`); `coordinator` and `worker`
are the two ends' state machines (`receive_text`/`receive` and `tick` return `actions`); the
WebSocket runtimes that perform those actions come in later sessions.
"""

from __future__ import annotations

from hearth.public_swarm.protocol.actions import Action, Close, CloseCode, Send
from hearth.public_swarm.protocol.coordinator import CoordinatorSession
from hearth.public_swarm.protocol.messages import PROTOCOL_VERSION, Message, MessageInvalid, decode, encode
from hearth.public_swarm.protocol.worker import WorkerSession

__all__ = ["PROTOCOL_VERSION", "Action", "Close", "CloseCode", "CoordinatorSession", "Message",
           "MessageInvalid", "Send", "WorkerSession", "decode", "encode"]
