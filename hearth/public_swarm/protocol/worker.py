"""A public worker's side of its one outbound connection to the coordinator, with no I/O.

`hearth contribute` (a later session) dials the coordinator, makes a `WorkerSession` with this
machine's node identity and the models it offers, feeds it every frame (`receive_text`) and the
clock (`tick`), and performs the actions it returns. Its engine pool answers a JobOffered with
`accept()` or `decline()`, streams output through `tokens()` and ends a job with `finish()` (which
signs the receipt) or `fail()`. The session numbers the Tokens frames and keeps the streamed text,
so the receipt always covers exactly what the coordinator received.

Rules it enforces (a violation closes the connection with a CloseCode; nothing raises):
- the coordinator's first message is a Challenge of PROTOCOL_VERSION, then a Welcome for this node,
  both within `handshake_timeout_s` of connecting;
- offers only after the Welcome, never for a job id already open, never more open than max_jobs;
  an offer for a model this worker did not offer is declined (model_not_held);
- nothing heard for 3 heartbeat intervals means the coordinator is gone: every open job is stopped;
- a Heartbeat goes out whenever nothing was sent for one interval.
A Cancel for a job that is not open is ignored (it crossed the job's Finished).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.public_swarm import receipts
from hearth.public_swarm.protocol.actions import (
    Action,
    Close,
    CloseCode,
    JobOffered,
    Send,
    StopJob,
    Welcomed,
)
from hearth.public_swarm.protocol.coordinator import MISSED_HEARTBEATS
from hearth.public_swarm.protocol.messages import (
    PROTOCOL_VERSION,
    Accept,
    Cancel,
    Challenge,
    Checked,
    Decline,
    Failed,
    Finished,
    FinishReason,
    Heartbeat,
    Hello,
    Message,
    MessageInvalid,
    ModelOffer,
    Offer,
    Ping,
    Tokens,
    Welcome,
    decode,
    prompt_bytes,
)


class WorkerPhase(Enum):
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_WELCOME = "await_welcome"
    READY = "ready"
    CLOSED = "closed"


@dataclass
class _Job:
    offer: Offer
    accepted: bool = False
    seq: int = 0
    text: list[str] = field(default_factory=list)
    completion_tokens: int = 0


class WorkerSession:
    """This worker's connection to one coordinator. `now` is any monotonic clock in seconds."""

    def __init__(self, identity: NodeIdentity, models: Sequence[ModelOffer], max_jobs: int, now: float,
                 *, handshake_timeout_s: float = 10.0, sampler: str | None = None) -> None:
        self.identity = identity
        self.sampler = sampler
        self.models = tuple(models)
        self.max_jobs = max_jobs
        self.handshake_timeout_s = handshake_timeout_s
        self.phase = WorkerPhase.AWAIT_CHALLENGE
        self.started_at = self.last_heard = self.last_sent = now
        self.heartbeat_s = 0.0
        self.jobs: dict[str, _Job] = {}

    def receive_text(self, text: str | bytes, now: float) -> list[Action]:
        """One frame from the coordinator, as it arrived."""
        if self.phase is WorkerPhase.CLOSED:
            return []
        try:
            msg = decode(text)
        except MessageInvalid as exc:
            return self._close(CloseCode.MALFORMED, exc.message)
        return self.receive(msg, now)

    def receive(self, msg: Message, now: float) -> list[Action]:
        """One decoded message from the coordinator."""
        if self.phase is WorkerPhase.CLOSED:
            return []
        self.last_heard = now
        match self.phase, msg:
            case WorkerPhase.AWAIT_CHALLENGE, Challenge():
                return self._challenge(msg, now)
            case WorkerPhase.AWAIT_WELCOME, Welcome():
                if msg.node_id != self.identity.node_id:
                    return self._close(CloseCode.UNEXPECTED, f"Welcomed as {msg.node_id}, not as this node.")
                self.phase, self.heartbeat_s = WorkerPhase.READY, msg.heartbeat_s
                return [Welcomed(msg.heartbeat_s)]
            case WorkerPhase.READY, Ping():
                return []
            case WorkerPhase.READY, Offer():
                return self._offer(msg, now)
            case WorkerPhase.READY, Cancel():
                return [StopJob(msg.job_id)] if self.jobs.pop(msg.job_id, None) else []
        return self._close(CloseCode.UNEXPECTED, f"A {msg.type!r} message is not expected now "
                                                 f"({self.phase.value}).")

    def tick(self, now: float) -> list[Action]:
        """Timers: handshake timeout, dead coordinator, heartbeats to send."""
        if self.phase is WorkerPhase.CLOSED:
            return []
        if self.phase is not WorkerPhase.READY:
            if now - self.started_at > self.handshake_timeout_s:
                return self._close(CloseCode.TIMEOUT, f"No welcome within {self.handshake_timeout_s:g} s.")
            return []
        if now - self.last_heard > MISSED_HEARTBEATS * self.heartbeat_s:
            return self._close(CloseCode.PEER_DEAD, f"The coordinator sent nothing for "
                                                    f"{now - self.last_heard:.1f} s; it is taken as gone.")
        if now - self.last_sent >= self.heartbeat_s:
            return self._send(Heartbeat(), now)
        return []

    # ---- called by the worker's engine pool ----------------------------------------------------

    def accept(self, job_id: str, now: float) -> list[Action]:
        job = self.jobs.get(job_id)
        if job is None or job.accepted:
            return []
        job.accepted = True
        return self._send(Accept(job_id=job_id), now)

    def decline(self, job_id: str, reason: str, now: float) -> list[Action]:
        job = self.jobs.get(job_id)
        if job is None or job.accepted:
            return []
        del self.jobs[job_id]
        return self._send(Decline(job_id=job_id, reason=reason), now)

    def tokens(self, job_id: str, text: str, token_ids: Sequence[int], now: float) -> list[Action]:
        """Stream output of an accepted job (nothing is sent if it was cancelled meanwhile)."""
        job = self.jobs.get(job_id)
        if job is None or not job.accepted:
            return []
        msg = Tokens(job_id=job_id, seq=job.seq, text=text, token_ids=list(token_ids))
        job.seq += 1
        job.text.append(text)
        job.completion_tokens += len(token_ids)
        return self._send(msg, now)

    def finish(self, job_id: str, finish_reason: FinishReason, prompt_tokens: int, now: float,
               *, finished_at: int | None = None) -> list[Action]:
        """End an accepted job: sign the receipt over its prompt and the text streamed, and send it."""
        job = self.jobs.pop(job_id, None)
        if job is None or not job.accepted:
            return []
        receipt = receipts.sign_receipt(
            self.identity, job_id=job_id, model_digest=job.offer.model_digest,
            prompt=prompt_bytes(job.offer.request), output="".join(job.text),
            prompt_tokens=prompt_tokens, completion_tokens=job.completion_tokens, finished_at=finished_at)
        return self._send(Finished(job_id=job_id, finish_reason=finish_reason,
                                   prompt_tokens=prompt_tokens, completion_tokens=job.completion_tokens,
                                   receipt=receipts.encode(receipt).decode("ascii")), now)

    def checked(self, job_id: str, prompt_tokens: int, ranks: Sequence[int], gaps: Sequence[float], text: str,
                now: float, picks: Sequence[int] | None = None) -> list[Action]:
        """Answer an accepted spot-check (an Offer with `check`): one rank and gap per token id, and
        for a replay one seeded pick per token id."""
        job = self.jobs.get(job_id)
        if job is None or not job.accepted or job.offer.check is None:
            return []
        del self.jobs[job_id]
        return self._send(Checked(job_id=job_id, prompt_tokens=prompt_tokens, ranks=list(ranks),
                                  gaps=list(gaps), text=text, picks=None if picks is None else list(picks)), now)

    def fail(self, job_id: str, code: str, message: str, now: float) -> list[Action]:
        if self.jobs.pop(job_id, None) is None:
            return []
        return self._send(Failed(job_id=job_id, code=code, message=message[:500]), now)

    def close(self, reason: str = "The worker is going away.") -> list[Action]:
        return self._close(CloseCode.NORMAL, reason)

    # ---- rules --------------------------------------------------------------------------------

    def _challenge(self, msg: Challenge, now: float) -> list[Action]:
        if msg.v != PROTOCOL_VERSION:
            return self._close(CloseCode.VERSION, f"The coordinator speaks protocol version {msg.v}; "
                                                  f"this worker speaks {PROTOCOL_VERSION}; update hearth.")
        try:
            nonce = b64.decode(msg.nonce)
        except ValueError as exc:
            return self._close(CloseCode.MALFORMED, f"The challenge's nonce is not base64: {exc}.")
        self.phase = WorkerPhase.AWAIT_WELCOME
        return self._send(Hello(v=PROTOCOL_VERSION, node_id=self.identity.node_id,
                                public_key=b64.encode(self.identity.public_key),
                                signature=b64.encode(self.identity.prove(nonce)),
                                models=list(self.models), max_jobs=self.max_jobs, sampler=self.sampler), now)

    def _offer(self, msg: Offer, now: float) -> list[Action]:
        if msg.job_id in self.jobs:
            return self._close(CloseCode.UNEXPECTED, f"Job {msg.job_id!r} was offered twice.")
        if len(self.jobs) >= self.max_jobs:
            return self._close(CloseCode.OVER_CAPACITY, f"Offered a job past this worker's {self.max_jobs}.")
        if msg.model_digest not in {m.digest for m in self.models}:
            return self._send(Decline(job_id=msg.job_id, reason="model_not_held"), now)
        self.jobs[msg.job_id] = _Job(msg)
        return [JobOffered(msg)]

    def _send(self, msg: Message, now: float) -> list[Action]:
        self.last_sent = now
        return [Send(msg)]

    def _close(self, code: CloseCode, reason: str) -> list[Action]:
        if self.phase is WorkerPhase.CLOSED:
            return []
        self.phase = WorkerPhase.CLOSED
        stops: list[Action] = [StopJob(j) for j in self.jobs]
        self.jobs.clear()
        return [*stops, Close(code, reason)]
