"""The ledger's refusals. Each has its own HTTP status and code so the coordinator can answer a
requester or worker with a clear 4xx (never a 500), from the typed fields, not the message."""

from __future__ import annotations

from hearth.errors import HearthError, InvalidRequest


class LedgerInputInvalid(InvalidRequest):
    """An amount, account id, hold id or idempotency key is malformed or out of range."""

    code = "invalid_ledger_input"


class KeyReused(InvalidRequest):
    """An idempotency key was sent again with other arguments: use a fresh key per operation."""

    http_status = 422
    code = "idempotency_key_reused"


class LedgerRefused(HearthError):
    """Category: the ledger refused a well-formed operation; nothing was written."""

    http_status = 409
    error_type = "invalid_request_error"
    code = "ledger_refused"


class InsufficientCredits(LedgerRefused):
    """The requester's balance does not cover the hold: earn credits by contributing, or ask for
    fewer tokens."""

    http_status = 402
    code = "insufficient_credits"


class HoldNotFound(LedgerRefused):
    """No hold has that id."""

    http_status = 404
    code = "hold_not_found"


class HoldClosed(LedgerRefused):
    """The hold was already settled, released or expired: a hold closes once."""

    code = "hold_closed"
