"""The messages a public worker and the coordinator exchange over the worker's one WebSocket (sans-IO).

Workers dial out (issue 10): a worker opens one WebSocket to the coordinator and everything rides
on it as text frames, one JSON object per frame, told apart by its `type`. This module is the one
definition of those objects for both ends, and the one codec: `decode(text) -> Message` (strict: exact
field set, exact JSON types, bounded sizes and counts, no NaN or Infinity, no duplicate keys; anything
else raises MessageInvalid) and `encode(msg) -> str` (compact JSON that `decode` reads back equal).
The order in which they may be sent is enforced by hearth.public_swarm.protocol.session.

worker → coordinator: Hello, Heartbeat, Accept, Decline, Tokens, Finished, Checked, Failed
coordinator → worker: Challenge, Welcome, Offer, Cancel, Ping

A spot-check (issue 11) is an Offer with `check` set: the worker does not generate, it scores
another worker's output (the check's token ids) under its own copy of the model and answers with
one Checked instead of Tokens and Finished.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from hearth.errors import InvalidRequest
from hearth.identity import NODE_ID_LEN
from hearth.public_swarm.receipts import MAX_RECEIPT_BYTES

PROTOCOL_VERSION = 1
"""Sent in Challenge and Hello; a coordinator closes a Hello of another version (CloseCode.VERSION)."""
MAX_FRAME_CHARS = 1_200_000
"""The longest frame `decode` looks at (an Offer with a long chat is the biggest message)."""
MAX_PROMPT_CHARS = 1_000_000
"""A job's prompt or chat messages together, in characters."""
MAX_CHAT_MESSAGES = 512
MAX_MODELS = 64
"""Models one worker may offer in its Hello."""
MAX_JOBS = 64
"""The most concurrent jobs a worker may say it takes."""
MAX_TOKENS = 2**20
"""The largest max_tokens of one job."""
MAX_IDS_PER_FRAME = 512
"""Token ids in one Tokens frame (at least one)."""
MAX_CHARS_PER_TOKEN = 256
"""A Tokens frame's text is at most this many characters per token id it carries, so the text a
job streams is bounded by its max_tokens."""
MAX_TOKEN_ID = 2**31 - 1
MAX_CHECK_TOKENS = 4096
"""Token ids one spot-check scores at most (a longer output is checked on its first this many)."""
MAX_CHECK_TOP_K = 64

_ID = r"^[A-Za-z0-9_-]{1,64}$"
_SHA256 = r"^[0-9a-f]{64}$"
_B64URL = r"^[A-Za-z0-9_-]*$"
_CODE = r"^[a-z0-9_]{1,40}$"

JobId = Annotated[str, Field(pattern=_ID)]
"""1 to 64 letters, digits, '-' or '_' (as a receipt's job_id)."""
Digest = Annotated[str, Field(pattern=_SHA256)]
"""A GGUF file's sha256 in 64 lower-case hex digits: exact weights, not a name."""
NodeId = Annotated[str, Field(pattern=rf"^[a-z2-7]{{{NODE_ID_LEN}}}$")]
Count = Annotated[int, Field(ge=0, le=2**32 - 1)]
Seq = Annotated[int, Field(ge=0, le=2**32 - 1)]
TokenId = Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]
FinishReason = Literal["stop", "length"]


class MessageInvalid(InvalidRequest):
    """A frame that is not one of the protocol's messages (not JSON, unknown type, a wrong or extra
    field, too large). The session closes the connection with CloseCode.MALFORMED."""

    code = "invalid_message"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# ---- parts -----------------------------------------------------------------------------------


class ModelOffer(_Strict):
    """One model a worker holds and serves, by the sha256 of its GGUF file."""

    digest: Digest
    name: str = Field(min_length=1, max_length=128)
    params: int = Field(ge=0, le=10**13)
    """Parameter count (prices come from it and the quantisation)."""
    quant: str = Field(min_length=1, max_length=32)
    n_ctx: int = Field(ge=1, le=2**24)
    decode_tps: float = Field(gt=0, le=1e6, allow_inf_nan=False)
    """Measured decode speed, tokens per second."""


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=MAX_PROMPT_CHARS)


class Sampling(_Strict):
    temperature: float = Field(default=0.0, ge=0, le=2, allow_inf_nan=False)
    top_p: float = Field(default=1.0, ge=0, le=1, allow_inf_nan=False)
    top_k: int = Field(default=0, ge=0, le=1000)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=4)


class Resume(_Strict):
    """What earlier workers already streamed for this job (failover): the new worker continues after it."""

    text: str = Field(max_length=MAX_CHARS_PER_TOKEN * MAX_TOKENS)
    token_ids: list[TokenId] = Field(max_length=MAX_TOKENS)


class JobRequest(_Strict):
    """What to generate: chat messages or a raw prompt (exactly one), sampling, max_tokens, resume."""

    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MAX_CHAT_MESSAGES)
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    sampling: Sampling = Field(default_factory=Sampling)
    max_tokens: int = Field(ge=1, le=MAX_TOKENS)
    resume: Resume | None = None

    @model_validator(mode="after")
    def _one_input(self) -> JobRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a job has either chat messages or a prompt, not both and not neither")
        if self.messages is not None and sum(len(m.content) for m in self.messages) > MAX_PROMPT_CHARS:
            raise ValueError(f"the chat messages hold more than {MAX_PROMPT_CHARS} characters")
        if self.resume is not None and len(self.resume.token_ids) >= self.max_tokens:
            raise ValueError("resume data already holds max_tokens tokens: nothing is left to generate")
        return self


class CheckRequest(_Strict):
    """Score another worker's output: evaluate the job's prompt (the Offer's request, resume data
    included), then these token ids one at a time, and at each step report where the given token
    ranks among this model's logits and how far below the best logit it is (see Checked)."""

    token_ids: list[TokenId] = Field(min_length=1, max_length=MAX_CHECK_TOKENS)
    top_k: int = Field(default=8, ge=1, le=MAX_CHECK_TOP_K)
    """Ranks at or past top_k are reported as top_k ("not among the best top_k")."""
    replay: bool = False
    """A sampled job's same-seed re-run: also report, at each step, the token the request's sampler
    (its temperature, top_p and seed, which the Offer then sets) picks (Checked.picks)."""


def prompt_bytes(request: JobRequest) -> bytes:
    """The bytes a job's receipt hashes as its prompt: the request (resume data included) as canonical
    JSON. Worker and coordinator both compute it from the parsed request, so they hash the same bytes."""
    return json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


# ---- worker → coordinator -------------------------------------------------------------------


class Hello(_Strict):
    """The worker's first message, answering the Challenge: who it is (proved by signing the
    challenge's nonce with its node key, hearth.identity.NodeIdentity.prove), what it serves."""

    type: Literal["hello"] = "hello"
    v: int = Field(ge=0, le=2**16)
    node_id: NodeId
    public_key: str = Field(min_length=43, max_length=44, pattern=_B64URL)
    """base64url of the 32-byte Ed25519 key."""
    signature: str = Field(min_length=86, max_length=88, pattern=_B64URL)
    """base64url of the 64-byte signature over the proof context and the challenge nonce."""
    models: list[ModelOffer] = Field(min_length=1, max_length=MAX_MODELS)
    max_jobs: int = Field(ge=1, le=MAX_JOBS)
    sampler: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._+/-]{1,80}$")
    """Names the worker's sampler (its chain and llama.cpp build): two workers naming the same one
    draw the same tokens from the same logits and seed, so a sampled job can be checked by a
    same-seed re-run. None: the worker cannot re-run one (its sampled jobs get canaries)."""

    @model_validator(mode="after")
    def _unique_models(self) -> Hello:
        if len({m.digest for m in self.models}) != len(self.models):
            raise ValueError("a Hello names one model digest twice")
        return self


class Heartbeat(_Strict):
    """Sent by the worker whenever it has sent nothing for Welcome.heartbeat_s seconds."""

    type: Literal["heartbeat"] = "heartbeat"


class Accept(_Strict):
    type: Literal["accept"] = "accept"
    job_id: JobId


class Decline(_Strict):
    type: Literal["decline"] = "decline"
    job_id: JobId
    reason: str = Field(pattern=_CODE)
    """A short code, e.g. busy, model_not_held, shutting_down."""


class Tokens(_Strict):
    """Some of a job's output: seq counts from 0 for each job, one up per frame, no gaps."""

    type: Literal["tokens"] = "tokens"
    job_id: JobId
    seq: Seq
    text: str
    token_ids: list[TokenId] = Field(min_length=1, max_length=MAX_IDS_PER_FRAME)

    @model_validator(mode="after")
    def _text_bound(self) -> Tokens:
        if len(self.text) > MAX_CHARS_PER_TOKEN * len(self.token_ids):
            raise ValueError(f"a Tokens frame carries at most {MAX_CHARS_PER_TOKEN} characters per token id")
        return self


class Finished(_Strict):
    """A job done: its counts and the worker's signed receipt (hearth.public_swarm.receipts' wire form)."""

    type: Literal["finished"] = "finished"
    job_id: JobId
    finish_reason: FinishReason
    prompt_tokens: Count
    completion_tokens: Count
    """Tokens this worker streamed for the job (resume tokens not included)."""
    receipt: str = Field(max_length=MAX_RECEIPT_BYTES)


Rank = Annotated[int, Field(ge=0, le=MAX_CHECK_TOP_K)]
Gap = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]


class Checked(_Strict):
    """A spot-check's answer, one entry per token id of the Offer's check, in order: `ranks[i]` is
    the place of token i among the scorer's logits at step i (0: the scorer's own greedy choice;
    top_k: not among its best top_k), `gaps[i]` the scorer's best logit minus token i's logit
    (0 when it is the best). `text` is the scorer's detokenisation of the ids, so the coordinator
    can tell whether they are the text the checked worker streamed."""

    type: Literal["checked"] = "checked"
    job_id: JobId
    prompt_tokens: Count
    ranks: list[Rank] = Field(min_length=1, max_length=MAX_CHECK_TOKENS)
    gaps: list[Gap] = Field(min_length=1, max_length=MAX_CHECK_TOKENS)
    text: str = Field(max_length=MAX_CHARS_PER_TOKEN * MAX_CHECK_TOKENS)
    picks: list[TokenId] | None = Field(default=None, max_length=MAX_CHECK_TOKENS)
    """A replay's (CheckRequest.replay) seeded picks, one per token id; None on a plain check."""

    @model_validator(mode="after")
    def _same_length(self) -> Checked:
        if len(self.ranks) != len(self.gaps):
            raise ValueError("a Checked has one gap per rank")
        if self.picks is not None and len(self.picks) != len(self.ranks):
            raise ValueError("a Checked's picks, when present, are one per rank")
        return self


class Failed(_Strict):
    """The worker could not finish a job it accepted; the coordinator may give it to another worker."""

    type: Literal["failed"] = "failed"
    job_id: JobId
    code: str = Field(pattern=_CODE)
    message: str = Field(max_length=500)


# ---- coordinator → worker -------------------------------------------------------------------


class Challenge(_Strict):
    """The coordinator's first message: a fresh nonce the worker signs in its Hello."""

    type: Literal["challenge"] = "challenge"
    v: int = Field(ge=0, le=2**16)
    nonce: str = Field(min_length=43, max_length=44, pattern=_B64URL)
    """base64url of 32 random bytes."""


class Welcome(_Strict):
    """The Hello was accepted: both ends now expect traffic every heartbeat_s seconds."""

    type: Literal["welcome"] = "welcome"
    node_id: NodeId
    heartbeat_s: float = Field(ge=0.05, le=300, allow_inf_nan=False)


class Offer(_Strict):
    """A job for the worker to Accept or Decline."""

    type: Literal["offer"] = "offer"
    job_id: JobId
    model_digest: Digest
    request: JobRequest
    check: CheckRequest | None = None
    """Set on a spot-check: score these token ids, answer with Checked (no Tokens, no Finished)."""

    @model_validator(mode="after")
    def _replay_has_seed(self) -> Offer:
        if self.check is not None and self.check.replay and self.request.sampling.seed is None:
            raise ValueError("a replay check re-runs the request's seed, so its sampling needs one")
        return self


class Cancel(_Strict):
    """Stop a job (the requester went away, or it was moved); the worker sends nothing more for it."""

    type: Literal["cancel"] = "cancel"
    job_id: JobId


class Ping(_Strict):
    """Sent by the coordinator whenever it has sent nothing for heartbeat_s seconds."""

    type: Literal["ping"] = "ping"


WorkerMessage = Hello | Heartbeat | Accept | Decline | Tokens | Finished | Checked | Failed
CoordinatorMessage = Challenge | Welcome | Offer | Cancel | Ping
Message = WorkerMessage | CoordinatorMessage
WORKER_MESSAGES = (Hello, Heartbeat, Accept, Decline, Tokens, Finished, Checked, Failed)
COORDINATOR_MESSAGES = (Challenge, Welcome, Offer, Cancel, Ping)

_ADAPTER: TypeAdapter[Message] = TypeAdapter(
    Annotated[Message, Field(discriminator="type")]
)
_TYPES = sorted(m.model_fields["type"].default for m in (*WORKER_MESSAGES, *COORDINATOR_MESSAGES))


def encode(msg: Message) -> str:
    """The frame for `msg`: compact JSON, every field written (defaults too)."""
    return msg.model_dump_json()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise MessageInvalid("A message names a field twice.")
    return d


def _no_constant(name: str) -> object:
    raise MessageInvalid(f"A message holds no {name}; numbers are finite.")


def decode(text: str | bytes) -> Message:
    """The message in one frame, from a stranger: anything may arrive. Raises MessageInvalid, and
    nothing else, for every frame that is not exactly one valid message."""
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_FRAME_CHARS * 4:
            raise MessageInvalid(f"A frame is at most {MAX_FRAME_CHARS} characters; this one is longer.")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageInvalid("A frame is UTF-8 text; this is not.") from exc
    if not isinstance(text, str):
        raise MessageInvalid(f"A frame is text, not {type(text).__name__}.")
    if len(text) > MAX_FRAME_CHARS:
        raise MessageInvalid(f"A frame is at most {MAX_FRAME_CHARS} characters; this one is {len(text)}.")
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise MessageInvalid(f"A frame is one JSON object; this is not JSON: {str(exc)[:80]}.") from exc
    if not isinstance(obj, dict):
        raise MessageInvalid(f"A frame is one JSON object, not {type(obj).__name__}.")
    try:  # a lone surrogate (JSON "\\ud800") parses, but no text holding one can be hashed or sent on
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MessageInvalid("A frame's text holds a lone UTF-16 surrogate; send valid Unicode.") from exc
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in _TYPES:
        what = "has no 'type'" if "type" not in obj else f"has unknown type {str(kind)[:40]!r}"
        raise MessageInvalid(f"A message {what}; the types are {', '.join(_TYPES)}.", param="type")
    try:
        return _ADAPTER.validate_python(obj, strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or kind
        raise MessageInvalid(f"A {kind!r} message is wrong at {where}: {first['msg'][:120]}.",
                             param=where[:80]) from exc
