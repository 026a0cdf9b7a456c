"""What a protocol session asks its runtime to do: the sessions do no I/O, they return these.

`Send` and `Close` go to the WebSocket; the other actions are events for the runtime that owns the
session (the coordinator's dispatcher, the worker's engine pool). A protocol violation never raises:
it becomes a `Close` with a `CloseCode` (WebSocket application codes, 4000-4999) and a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from hearth.public_swarm.protocol.messages import Message, ModelOffer, Offer
from hearth.public_swarm.receipts import Receipt


class CloseCode(IntEnum):
    """Why a session closed its connection; the number goes in the WebSocket close frame."""

    NORMAL = 1000
    MALFORMED = 4000
    """A frame that is not a protocol message (MessageInvalid)."""
    UNEXPECTED = 4001
    """A message out of order (Hello not first, a second Hello) or for the other side."""
    VERSION = 4002
    """A protocol version this build does not speak."""
    FORGED_IDENTITY = 4003
    """The Hello's key is not its node id's, or it did not sign the challenge."""
    TIMEOUT = 4004
    """The handshake (challenge, hello, welcome) was not completed in time."""
    PEER_DEAD = 4005
    """Nothing heard for three heartbeat intervals."""
    UNKNOWN_JOB = 4006
    """A message about a job that was not offered (and, for Tokens or Finished, accepted)."""
    BAD_SEQUENCE = 4007
    """A Tokens seq that is not the previous one plus one (the first is 0)."""
    OVER_CAPACITY = 4008
    """More jobs offered than the worker's max_jobs, or more tokens than the job's max_tokens."""
    RECEIPT_REFUSED = 4009
    """A Finished whose receipt is malformed or does not verify (key, job, model, prompt, output)."""
    COUNT_MISMATCH = 4010
    """A Finished whose counts disagree with its receipt or with what was streamed, or a Checked
    whose length is not its check's."""


@dataclass(frozen=True)
class Send:
    """Send this message as one text frame (messages.encode)."""

    message: Message


@dataclass(frozen=True)
class Close:
    """Close the connection with this code and reason; the session is over and ignores what follows."""

    code: CloseCode
    reason: str


# ---- events for the coordinator's runtime ------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """The worker proved its node key; it serves these models, at most max_jobs at once."""

    node_id: str
    public_key: bytes
    models: tuple[ModelOffer, ...]
    max_jobs: int


@dataclass(frozen=True)
class JobAccepted:
    job_id: str


@dataclass(frozen=True)
class JobDeclined:
    """The worker said no, did not answer in time, or the session could not offer the job at all
    (full, closed, model not served): give the job to another worker."""

    job_id: str
    reason: str


@dataclass(frozen=True)
class JobTokens:
    """Output to stream to the requester, in order."""

    job_id: str
    text: str
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class JobFinished:
    """A job done, with a receipt that verified against the worker's key, the job's prompt and
    model, and exactly the output streamed; completion_tokens is what was streamed."""

    job_id: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    receipt: Receipt


@dataclass(frozen=True)
class JobChecked:
    """A spot-check's answer (messages.Checked): one rank and gap per token id of the check, and
    on a replay one seeded pick per token id."""

    job_id: str
    prompt_tokens: int
    ranks: tuple[int, ...]
    gaps: tuple[float, ...]
    text: str
    picks: tuple[int, ...] | None = None


@dataclass(frozen=True)
class JobFailed:
    """The worker gave up on the job (its code and message): retry it elsewhere."""

    job_id: str
    code: str
    message: str


@dataclass(frozen=True)
class JobLost:
    """The session closed with this job unfinished. `text` and `token_ids` are what this worker
    streamed of it: append them to the job's resume data and offer it to another worker."""

    job_id: str
    text: str
    token_ids: tuple[int, ...]


# ---- events for the worker's runtime -----------------------------------------------------------


@dataclass(frozen=True)
class Welcomed:
    """The coordinator accepted the Hello; jobs may now be offered."""

    heartbeat_s: float


@dataclass(frozen=True)
class JobOffered:
    """Decide, then call WorkerSession.accept or .decline."""

    offer: Offer


@dataclass(frozen=True)
class StopJob:
    """Stop generating this job (cancelled, or the coordinator is gone); send nothing more for it."""

    job_id: str


Action = (Send | Close | Registered | JobAccepted | JobDeclined | JobTokens | JobFinished | JobChecked | JobFailed
          | JobLost | Welcomed | JobOffered | StopJob)
