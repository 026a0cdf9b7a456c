"""The control API's refusals: raised by the agent, sent as hearth's error body, raised again
by the client from the body's `code` (never from its message text)."""

from __future__ import annotations

from hearth.errors import HearthError, OutOfCapacity, RefusedByPeer
from hearth.pairing.signed import NotPaired, Unsigned


class LeaseRefused(RefusedByPeer, OutOfCapacity):
    """The node cannot grant the lease (memory, count); the message says which."""

    http_status = 409
    error_type = "invalid_request_error"
    code = "lease_refused"


class LeaseNotFound(RefusedByPeer):
    """No such lease (expired, released, or never granted)."""

    http_status = 404
    error_type = "invalid_request_error"
    code = "lease_not_found"


REFUSALS: dict[str, type[HearthError]] = {
    cls.code: cls for cls in (LeaseRefused, LeaseNotFound, Unsigned, NotPaired)}
"""An error body's code -> the error the client raises for it."""
