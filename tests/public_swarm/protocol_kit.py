"""Shared pieces for the protocol tests: real node keys, hypothesis strategies for every message, and
`Link`, which wires a WorkerSession to a CoordinatorSession in memory through the real codec (every
Send is encoded to text and decoded by the other side), no sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st
from nacl.signing import SigningKey

from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.public_swarm.protocol import messages as m
from hearth.public_swarm.protocol.actions import Action, Close, Send
from hearth.public_swarm.protocol.coordinator import CoordinatorSession
from hearth.public_swarm.protocol.worker import WorkerSession

WORKER = NodeIdentity(SigningKey(bytes(range(32))))
OTHER = NodeIdentity(SigningKey(bytes(range(1, 33))))
DIGEST = "ab" * 32
NONCE = bytes(range(100, 132))
MODEL = m.ModelOffer(digest=DIGEST, name="qwen2.5-0.5b-instruct", params=494_000_000, quant="Q4_K_M",
                     n_ctx=4096, decode_tps=42.5)


def offer(job_id: str = "job-1", max_tokens: int = 16, resume: m.Resume | None = None) -> m.Offer:
    return m.Offer(job_id=job_id, model_digest=DIGEST, request=m.JobRequest(
        messages=[m.ChatMessage(role="user", content="Why is the sky blue?")], max_tokens=max_tokens,
        resume=resume))


@dataclass
class Link:
    """A worker and a coordinator joined by an in-memory pipe that carries frames as text."""

    now: float = 0.0
    max_jobs: int = 2
    heartbeat_s: float = 1.0
    coord: CoordinatorSession = field(init=False)
    worker: WorkerSession = field(init=False)
    coord_events: list[Action] = field(default_factory=list)
    worker_events: list[Action] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.coord = CoordinatorSession(self.now, heartbeat_s=self.heartbeat_s, nonce=NONCE)
        self.worker = WorkerSession(WORKER, [MODEL], self.max_jobs, self.now)

    def from_coord(self, actions: list[Action]) -> list[Action]:
        """Deliver the coordinator's Sends to the worker (and onwards); keep the other actions."""
        for a in actions:
            if isinstance(a, Send):
                self.frames.append(text := m.encode(a.message))
                self.from_worker(self.worker.receive_text(text, self.now))
            else:
                self.coord_events.append(a)
        return actions

    def from_worker(self, actions: list[Action]) -> list[Action]:
        for a in actions:
            if isinstance(a, Send):
                self.frames.append(text := m.encode(a.message))
                self.from_coord(self.coord.receive_text(text, self.now))
            else:
                self.worker_events.append(a)
        return actions

    def handshake(self) -> None:
        self.from_coord(self.coord.start())

    def closes(self) -> list[Close]:
        return [a for a in (*self.coord_events, *self.worker_events) if isinstance(a, Close)]


# ---- strategies ------------------------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
digests = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
node_ids = st.from_regex(r"[a-z2-7]{16}", fullmatch=True)
codes = st.from_regex(r"[a-z0-9_]{1,40}", fullmatch=True)
short = st.text(max_size=40)
counts = st.integers(0, 2**32 - 1)
token_ids = st.integers(0, m.MAX_TOKEN_ID)

model_offers = st.builds(m.ModelOffer, digest=digests, name=st.text(min_size=1, max_size=20), params=st.integers(0, 10**13),
                         quant=st.text(min_size=1, max_size=8), n_ctx=st.integers(1, 2**24),
                         decode_tps=st.floats(0.001, 1e6, allow_nan=False))
samplings = st.builds(m.Sampling, temperature=st.floats(0, 2), top_p=st.floats(0, 1), top_k=st.integers(0, 1000),
                      seed=st.none() | st.integers(0, 2**32 - 1),
                      stop=st.lists(st.text(min_size=1, max_size=8), max_size=4))
chat = st.lists(st.builds(m.ChatMessage, role=st.sampled_from(["system", "user", "assistant", "tool"]),
                          content=short), min_size=1, max_size=4)


@st.composite
def requests(draw: st.DrawFn) -> m.JobRequest:
    max_tokens = draw(st.integers(1, m.MAX_TOKENS))
    resume = draw(st.none() | st.builds(m.Resume, text=short, token_ids=st.lists(token_ids, max_size=min(5, max_tokens - 1))))
    as_chat = draw(st.booleans())
    return m.JobRequest(messages=draw(chat) if as_chat else None, prompt=None if as_chat else draw(short),
                        sampling=draw(samplings), max_tokens=max_tokens, resume=resume)


@st.composite
def tokens_msgs(draw: st.DrawFn) -> m.Tokens:
    ids_ = draw(st.lists(token_ids, min_size=1, max_size=8))
    return m.Tokens(job_id=draw(ids), seq=draw(counts), text=draw(st.text(max_size=len(ids_) * 4)), token_ids=ids_)


@st.composite
def hellos(draw: st.DrawFn) -> m.Hello:
    models = draw(st.lists(model_offers, min_size=1, max_size=3, unique_by=lambda o: o.digest))
    return m.Hello(v=draw(st.integers(0, 2**16)), node_id=draw(node_ids),
                   public_key=b64.encode(draw(st.binary(min_size=32, max_size=32))),
                   signature=b64.encode(draw(st.binary(min_size=64, max_size=64))),
                   models=models, max_jobs=draw(st.integers(1, m.MAX_JOBS)))


@st.composite
def checked_msgs(draw: st.DrawFn) -> m.Checked:
    n = draw(st.integers(1, 6))
    return m.Checked(job_id=draw(ids), prompt_tokens=draw(counts),
                     ranks=draw(st.lists(st.integers(0, m.MAX_CHECK_TOP_K), min_size=n, max_size=n)),
                     gaps=draw(st.lists(st.floats(0, 1e6), min_size=n, max_size=n)), text=draw(short))


checks = st.none() | st.builds(m.CheckRequest, token_ids=st.lists(token_ids, min_size=1, max_size=6),
                               top_k=st.integers(1, m.MAX_CHECK_TOP_K))

MESSAGES: dict[str, st.SearchStrategy[m.Message]] = {
    "hello": hellos(),
    "heartbeat": st.just(m.Heartbeat()),
    "accept": st.builds(m.Accept, job_id=ids),
    "decline": st.builds(m.Decline, job_id=ids, reason=codes),
    "tokens": tokens_msgs(),
    "finished": st.builds(m.Finished, job_id=ids, finish_reason=st.sampled_from(["stop", "length"]),
                          prompt_tokens=counts, completion_tokens=counts, receipt=st.text(max_size=100)),
    "checked": checked_msgs(),
    "failed": st.builds(m.Failed, job_id=ids, code=codes, message=st.text(max_size=100)),
    "challenge": st.builds(m.Challenge, v=st.integers(0, 2**16),
                           nonce=st.binary(min_size=32, max_size=32).map(b64.encode)),
    "welcome": st.builds(m.Welcome, node_id=node_ids, heartbeat_s=st.floats(0.05, 300)),
    "offer": st.builds(m.Offer, job_id=ids, model_digest=digests, request=requests(), check=checks),
    "cancel": st.builds(m.Cancel, job_id=ids),
    "ping": st.just(m.Ping()),
}
any_message = st.one_of(*MESSAGES.values())
