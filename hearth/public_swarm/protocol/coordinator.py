"""The coordinator's side of one worker's connection, as a state machine with no I/O.

The coordinator's WebSocket handler makes one `CoordinatorSession` per connecting worker, sends what
`start()` returns, then feeds it every frame (`receive_text`) and the clock (`tick`), and performs
the actions it gets back (hearth.public_swarm.protocol.actions). Its dispatcher offers jobs through
`offer()` and stops them with `cancel()`.

Rules it enforces (a violation closes the connection with a CloseCode; nothing raises):
- the worker's first message is a Hello, within `hello_timeout_s` of the Challenge, of
  PROTOCOL_VERSION, whose key hashes to its node id and signed the challenge nonce;
- after that, nothing heard for 3 heartbeat intervals means the worker is dead (any message counts);
- Accept and Decline only for a job offered and not yet answered; an offer unanswered within
  `offer_timeout_s` is cancelled and reported declined;
- Tokens and Finished only for a job offered and accepted; a job's Tokens seq runs 0, 1, 2, … with
  no gap; a job never streams more tokens than it has left of max_tokens;
- a Finished's receipt parses, names this job, this model and this worker, verifies with the
  worker's key against the job's prompt bytes and exactly the text streamed, and its counts equal
  the Finished's, whose completion_tokens equals the token ids streamed;
- a spot-check (an Offer with `check`) is answered by one Checked with one rank and gap per token
  id checked, and by no Tokens or Finished; a plain job is never answered by a Checked;
- never more jobs at once than the worker's max_jobs (offer() declines locally when full).
When the session closes with jobs unfinished, each is reported as JobLost with what it streamed.
Messages about a job the coordinator cancelled are ignored (they may have crossed the Cancel).
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from hearth.identity import ForgedNode, verify_proof
from hearth.net import b64
from hearth.public_swarm import receipts
from hearth.public_swarm.protocol.actions import (
    Action,
    Close,
    CloseCode,
    JobAccepted,
    JobChecked,
    JobDeclined,
    JobFailed,
    JobFinished,
    JobLost,
    JobTokens,
    Registered,
    Send,
)
from hearth.public_swarm.protocol.messages import (
    PROTOCOL_VERSION,
    Accept,
    Cancel,
    Challenge,
    Checked,
    Decline,
    Failed,
    Finished,
    Heartbeat,
    Hello,
    Message,
    MessageInvalid,
    Offer,
    Ping,
    Tokens,
    Welcome,
    decode,
    prompt_bytes,
)

MISSED_HEARTBEATS = 3
"""Heartbeat intervals of silence after which a peer is declared dead."""
_CANCELLED_KEPT = 256


class Phase(Enum):
    AWAIT_HELLO = "await_hello"
    READY = "ready"
    CLOSED = "closed"


@dataclass
class _Job:
    offer: Offer
    offered_at: float
    accepted: bool = False
    next_seq: int = 0
    text: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)

    @property
    def budget(self) -> int:
        """Tokens this worker may still stream: max_tokens less what earlier workers streamed."""
        resumed = self.offer.request.resume
        return self.offer.request.max_tokens - (len(resumed.token_ids) if resumed else 0)


class CoordinatorSession:
    """One worker's connection as the coordinator sees it. `now` is any monotonic clock in seconds."""

    def __init__(self, now: float, *, heartbeat_s: float = 5.0, hello_timeout_s: float = 10.0,
                 offer_timeout_s: float = 10.0, nonce: bytes | None = None) -> None:
        self.phase = Phase.AWAIT_HELLO
        self.heartbeat_s = heartbeat_s
        self.hello_timeout_s = hello_timeout_s
        self.offer_timeout_s = offer_timeout_s
        self.nonce = secrets.token_bytes(32) if nonce is None else nonce
        self.started_at = now
        self.last_heard = now
        self.last_sent = now
        self.node_id: str | None = None
        self.public_key: bytes | None = None
        self.sampler: str | None = None
        """The worker's Hello.sampler: who may re-run its sampled jobs with their seeds."""
        self.models: dict[str, int] = {}
        """Digest → the model's n_ctx, for the models the worker offered."""
        self.max_jobs = 0
        self.jobs: dict[str, _Job] = {}
        self._cancelled: deque[str] = deque(maxlen=_CANCELLED_KEPT)

    # ---- driven by the runtime ----------------------------------------------------------------

    def start(self) -> list[Action]:
        """The first frame: the challenge the worker must sign."""
        return [Send(Challenge(v=PROTOCOL_VERSION, nonce=b64.encode(self.nonce)))]

    def receive_text(self, text: str | bytes, now: float) -> list[Action]:
        """One frame from the worker, as it arrived."""
        if self.phase is Phase.CLOSED:
            return []
        try:
            msg = decode(text)
        except MessageInvalid as exc:
            return self._close(CloseCode.MALFORMED, exc.message)
        return self.receive(msg, now)

    def receive(self, msg: Message, now: float) -> list[Action]:
        """One decoded message from the worker."""
        if self.phase is Phase.CLOSED:
            return []
        self.last_heard = now
        if self.phase is Phase.AWAIT_HELLO:
            if not isinstance(msg, Hello):
                return self._close(CloseCode.UNEXPECTED, f"The first message must be a hello, not {msg.type!r}.")
            return self._hello(msg, now)
        match msg:
            case Heartbeat():
                return []
            case Accept() | Decline():
                return self._answer(msg)
            case Tokens():
                return self._tokens(msg)
            case Finished():
                return self._finished(msg)
            case Checked():
                return self._checked(msg)
            case Failed():
                return self._failed(msg)
            case Hello():
                return self._close(CloseCode.UNEXPECTED, "A second hello on one connection.")
        return self._close(CloseCode.UNEXPECTED, f"A {msg.type!r} message goes from the coordinator "
                                                 "to a worker, not the other way.")

    def tick(self, now: float) -> list[Action]:
        """Timers: handshake timeout, dead worker, unanswered offers, pings to send."""
        if self.phase is Phase.CLOSED:
            return []
        if self.phase is Phase.AWAIT_HELLO:
            if now - self.started_at > self.hello_timeout_s:
                return self._close(CloseCode.TIMEOUT, f"No hello within {self.hello_timeout_s:g} s of the challenge.")
            return []
        if now - self.last_heard > MISSED_HEARTBEATS * self.heartbeat_s:
            return self._close(CloseCode.PEER_DEAD, f"Worker {self.node_id} sent nothing for "
                                                    f"{now - self.last_heard:.1f} s; it is taken as dead.")
        actions: list[Action] = []
        for job_id, job in list(self.jobs.items()):
            if not job.accepted and now - job.offered_at > self.offer_timeout_s:
                actions += self.cancel(job_id, now)
                actions.append(JobDeclined(job_id, "no_answer"))
        if now - self.last_sent >= self.heartbeat_s:
            actions += self._send(Ping(), now)
        return actions

    def offer(self, offer: Offer, now: float) -> list[Action]:
        """Offer a job. When this worker cannot take it (not ready, full, model not offered, id in use)
        nothing is sent and the job comes straight back as JobDeclined."""
        reason = None
        if self.phase is not Phase.READY:
            reason = "not_ready"
        elif offer.job_id in self.jobs or offer.job_id in self._cancelled:
            reason = "job_id_in_use"
        elif len(self.jobs) >= self.max_jobs:
            reason = "busy"
        elif offer.model_digest not in self.models:
            reason = "model_not_held"
        if reason is not None:
            return [JobDeclined(offer.job_id, reason)]
        self.jobs[offer.job_id] = _Job(offer, offered_at=now)
        return self._send(offer, now)

    def cancel(self, job_id: str, now: float) -> list[Action]:
        """Stop a job; later messages about it are ignored."""
        if self.phase is Phase.CLOSED or self.jobs.pop(job_id, None) is None:
            return []
        self._cancelled.append(job_id)
        return self._send(Cancel(job_id=job_id), now)

    def close(self, reason: str = "The coordinator is going away.") -> list[Action]:
        return self._close(CloseCode.NORMAL, reason)

    # ---- rules --------------------------------------------------------------------------------

    def _hello(self, msg: Hello, now: float) -> list[Action]:
        if msg.v != PROTOCOL_VERSION:
            return self._close(CloseCode.VERSION, f"This coordinator speaks protocol version "
                                                  f"{PROTOCOL_VERSION}, not {msg.v}; update hearth.")
        try:
            public_key, signature = b64.decode(msg.public_key), b64.decode(msg.signature)
            verify_proof(msg.node_id, public_key, self.nonce, signature)
        except (ValueError, ForgedNode) as exc:
            return self._close(CloseCode.FORGED_IDENTITY, f"The hello does not prove node {msg.node_id}: {exc}")
        self.phase = Phase.READY
        self.node_id, self.public_key, self.max_jobs = msg.node_id, public_key, msg.max_jobs
        self.sampler = msg.sampler
        self.models = {m.digest: m.n_ctx for m in msg.models}
        return [*self._send(Welcome(node_id=msg.node_id, heartbeat_s=self.heartbeat_s), now),
                Registered(msg.node_id, public_key, tuple(msg.models), msg.max_jobs)]

    def _job(self, job_id: str, kind: str, *, accepted: bool | None) -> _Job | list[Action]:
        """The job a message names, or the actions for a message that names no such job: none when
        it was cancelled (the message crossed the Cancel), else a close."""
        job = self.jobs.get(job_id)
        if job is None:
            if job_id in self._cancelled:
                return []
            return self._close(CloseCode.UNKNOWN_JOB, f"A {kind} for job {job_id!r}, which was not offered.")
        if accepted is not None and job.accepted != accepted:
            state = "already answered" if job.accepted else "not accepted"
            return self._close(CloseCode.UNKNOWN_JOB, f"A {kind} for job {job_id!r}, which is {state}.")
        return job

    def _answer(self, msg: Accept | Decline) -> list[Action]:
        job = self._job(msg.job_id, msg.type, accepted=False)
        if isinstance(job, list):
            return job
        if isinstance(msg, Decline):
            del self.jobs[msg.job_id]
            return [JobDeclined(msg.job_id, msg.reason)]
        job.accepted = True
        return [JobAccepted(msg.job_id)]

    def _tokens(self, msg: Tokens) -> list[Action]:
        job = self._job(msg.job_id, "tokens", accepted=True)
        if isinstance(job, list):
            return job
        if job.offer.check is not None:
            return self._close(CloseCode.UNEXPECTED, f"Tokens for job {msg.job_id!r}, a spot-check; "
                                                     "it is answered by one checked message.")
        if msg.seq != job.next_seq:
            return self._close(CloseCode.BAD_SEQUENCE, f"Tokens for job {msg.job_id!r} with seq {msg.seq}; "
                                                       f"the next is {job.next_seq}.")
        if len(job.token_ids) + len(msg.token_ids) > job.budget:
            return self._close(CloseCode.OVER_CAPACITY, f"Job {msg.job_id!r} may stream {job.budget} "
                                                        "tokens; this frame goes past that.")
        job.next_seq += 1
        job.text.append(msg.text)
        job.token_ids.extend(msg.token_ids)
        return [JobTokens(msg.job_id, msg.text, tuple(msg.token_ids))]

    def _finished(self, msg: Finished) -> list[Action]:
        job = self._job(msg.job_id, "finished", accepted=True)
        if isinstance(job, list):
            return job
        assert self.public_key is not None and self.node_id is not None  # READY
        if job.offer.check is not None:
            return self._close(CloseCode.UNEXPECTED, f"A finished for job {msg.job_id!r}, a spot-check; "
                                                     "it is answered by one checked message.")
        try:
            receipt = receipts.parse(msg.receipt)
            if (receipt.job_id, receipt.model_digest) != (msg.job_id, job.offer.model_digest):
                raise receipts.ReceiptForged("it names another job or model")
            receipts.verify(receipt, self.public_key, prompt=prompt_bytes(job.offer.request),
                            output="".join(job.text))
        except receipts.ReceiptInvalid as exc:  # ReceiptForged is one
            return self._close(CloseCode.RECEIPT_REFUSED, f"The receipt for job {msg.job_id!r} "
                                                          f"is refused: {exc.message}")
        streamed = len(job.token_ids)
        if not (msg.completion_tokens == receipt.completion_tokens == streamed
                and msg.prompt_tokens == receipt.prompt_tokens):
            return self._close(CloseCode.COUNT_MISMATCH, (
                f"Job {msg.job_id!r} streamed {streamed} tokens; the finished message says "
                f"{msg.prompt_tokens}+{msg.completion_tokens}, the receipt "
                f"{receipt.prompt_tokens}+{receipt.completion_tokens}."))
        del self.jobs[msg.job_id]
        return [JobFinished(msg.job_id, msg.finish_reason, msg.prompt_tokens, streamed, receipt)]

    def _checked(self, msg: Checked) -> list[Action]:
        job = self._job(msg.job_id, "checked", accepted=True)
        if isinstance(job, list):
            return job
        check = job.offer.check
        if check is None:
            return self._close(CloseCode.UNEXPECTED, f"A checked for job {msg.job_id!r}, which is not a spot-check.")
        if len(msg.ranks) != len(check.token_ids):
            return self._close(CloseCode.COUNT_MISMATCH, f"Job {msg.job_id!r} checks {len(check.token_ids)} "
                                                         f"tokens; the checked message scores {len(msg.ranks)}.")
        if check.replay != (msg.picks is not None):
            return self._close(CloseCode.UNEXPECTED, f"Job {msg.job_id!r} is {'a' if check.replay else 'no'} "
                                                     "replay; its checked message must carry picks exactly then.")
        del self.jobs[msg.job_id]
        return [JobChecked(msg.job_id, msg.prompt_tokens, tuple(msg.ranks), tuple(msg.gaps), msg.text,
                           None if msg.picks is None else tuple(msg.picks))]

    def _failed(self, msg: Failed) -> list[Action]:
        job = self._job(msg.job_id, "failed", accepted=None)
        if isinstance(job, list):
            return job
        del self.jobs[msg.job_id]
        return [JobFailed(msg.job_id, msg.code, msg.message)]

    # ---- plumbing -----------------------------------------------------------------------------

    def _send(self, msg: Message, now: float) -> list[Action]:
        self.last_sent = now
        return [Send(msg)]

    def _close(self, code: CloseCode, reason: str) -> list[Action]:
        """Close once; every job still open is handed back as JobLost."""
        if self.phase is Phase.CLOSED:
            return []
        self.phase = Phase.CLOSED
        lost: list[Action] = [JobLost(j, "".join(job.text), tuple(job.token_ids)) for j, job in self.jobs.items()]
        self.jobs.clear()
        return [*lost, Close(code, reason)]
