"""A worker's signed receipt for a finished public-swarm job (sans-IO).

The worker signs what it served: the job, the exact weights (GGUF sha256), the sha256 of the prompt
bytes it was given and of the output bytes it sent, the token counts it claims, its node id and the
time. The coordinator checks the receipt before it settles the hold and credits the worker; it
forwards the receipt, and the requester, given the worker's public key, can check that this
worker served exactly this output from exactly these weights.

Wire form: the compact JSON of `encode` (sorted keys, no spaces, ASCII), at most MAX_RECEIPT_BYTES.
The signature is Ed25519 by the worker's node key over RECEIPT_CONTEXT + the same JSON without the
`signature` field. The context keeps a receipt signature from ever passing as a node-identity proof
or a signed control request (and the reverse). `parse` is strict: exact field set, exact types and
formats, and the text must be the canonical encoding of what it holds, so one receipt has exactly
one encoding and any changed byte is either refused here or fails `verify`.

Which bytes are "the prompt" is for the job protocol to fix (for chat, the job body as the worker
received it); the worker, the coordinator and the requester must hash the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from hearth.errors import InvalidRequest
from hearth.identity import NODE_ID_LEN, NodeIdentity, node_id_of
from hearth.net import b64

RECEIPT_CONTEXT = b"hearth-receipt-v1\x00"
VERSION = 1
MAX_RECEIPT_BYTES = 1024
"""A real receipt is about 420 bytes; anything longer is refused before it is parsed."""
MAX_TOKENS = 2**32 - 1
MAX_TIME = 2**40
"""Seconds since the epoch; far beyond any real clock, small enough for any database column."""

_JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NODE_ID_RE = re.compile(rf"[a-z2-7]{{{NODE_ID_LEN}}}")
FIELDS = ("v", "job_id", "model_digest", "prompt_sha256", "output_sha256", "prompt_tokens",
          "completion_tokens", "worker", "finished_at", "signature")


class ReceiptInvalid(InvalidRequest):
    """A receipt that is not well formed (wrong fields, types, sizes or encoding). It is refused;
    the worker that sent it is not paid for the job on its strength."""

    code = "invalid_receipt"


class ReceiptForged(ReceiptInvalid):
    """A well-formed receipt whose signature, worker id or hashes do not match: the worker did not
    sign it, or the prompt or output is not what it covers. Do not pay or trust it."""

    http_status = 403
    error_type = "permission_error"
    code = "forged_receipt"


@dataclass(frozen=True)
class Receipt:
    """One finished job as the worker signed it. Hashes are lower-case hex; `signature` is the
    raw 64-byte Ed25519 signature; `finished_at` is whole seconds since the epoch."""

    job_id: str
    model_digest: str
    prompt_sha256: str
    output_sha256: str
    prompt_tokens: int
    completion_tokens: int
    worker: str
    finished_at: int
    signature: bytes

    def body(self) -> dict[str, Any]:
        """The signed fields, as they go on the wire."""
        d = asdict(self)
        del d["signature"]
        d["v"] = VERSION
        return d

    def signed_bytes(self) -> bytes:
        """What the worker signs: the context, then the canonical JSON of every field but the signature."""
        return RECEIPT_CONTEXT + _canonical(self.body())

    def to_json(self) -> dict[str, Any]:
        """The receipt as a JSON object, e.g. to embed in a job result or an HTTP response."""
        return {**self.body(), "signature": b64.encode(self.signature)}


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256_hex(data: bytes | str) -> str:
    """The sha256 a receipt records: of the bytes, or of the text's UTF-8."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def sign_receipt(identity: NodeIdentity, *, job_id: str, model_digest: str, prompt: bytes | str,
                 output: bytes | str, prompt_tokens: int, completion_tokens: int,
                 finished_at: int | None = None) -> Receipt:
    """The worker's receipt for a job it finished, signed with its node key. The fields are
    checked as `parse` checks them, so a worker never sends a receipt the coordinator refuses."""
    unsigned = Receipt(
        job_id=job_id, model_digest=model_digest, prompt_sha256=sha256_hex(prompt),
        output_sha256=sha256_hex(output), prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, worker=identity.node_id,
        finished_at=int(time.time()) if finished_at is None else finished_at, signature=b"",
    )
    _check_fields(unsigned.body())
    signature = bytes(identity.signing_key.sign(unsigned.signed_bytes()).signature)
    return replace(unsigned, signature=signature)


def encode(receipt: Receipt) -> bytes:
    """The wire form: canonical JSON, the only text `parse` accepts for this receipt."""
    return _canonical(receipt.to_json())


def _show(value: object) -> str:
    """A short, safe picture of a value from a stranger (str() of a huge int raises)."""
    if type(value) is int and not -(10**30) < value < 10**30:
        return "a number too large"
    return repr(value)[:80] if isinstance(value, str | int | float | bool | None) else type(value).__name__


def _check_fields(d: dict[str, Any]) -> None:
    """Every signed field's type and format; ReceiptInvalid names the first that is wrong."""
    def bad(field: str, want: str) -> ReceiptInvalid:
        return ReceiptInvalid(f"Receipt field {field!r} must be {want}; got {_show(d.get(field))}.",
                              param=field)

    if type(d.get("v")) is not int or d["v"] != VERSION:
        raise bad("v", f"{VERSION} (this build reads version {VERSION} receipts only)")
    for field, pattern, want in (
        ("job_id", _JOB_ID_RE, "1 to 64 letters, digits, '-' or '_'"),
        ("model_digest", _SHA256_RE, "a GGUF sha256 in 64 lower-case hex digits"),
        ("prompt_sha256", _SHA256_RE, "64 lower-case hex digits"),
        ("output_sha256", _SHA256_RE, "64 lower-case hex digits"),
        ("worker", _NODE_ID_RE, f"a node id ({NODE_ID_LEN} characters a-z, 2-7)"),
    ):
        value = d.get(field)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise bad(field, want)
    for field, high in (("prompt_tokens", MAX_TOKENS), ("completion_tokens", MAX_TOKENS),
                        ("finished_at", MAX_TIME)):
        value = d.get(field)
        if type(value) is not int or not 0 <= value <= high:
            raise bad(field, f"a whole number from 0 to {high}")


def from_json(obj: object) -> Receipt:
    """A receipt from a decoded JSON object (e.g. embedded in a larger message): exact field set,
    strict types. The signature is checked by `verify`, not here."""
    if not isinstance(obj, dict):
        raise ReceiptInvalid(f"A receipt is a JSON object, not {type(obj).__name__}.")
    keys = set(obj)
    if keys != set(FIELDS):
        missing, extra = sorted(set(FIELDS) - keys), sorted(str(k)[:40] for k in keys - set(FIELDS))
        raise ReceiptInvalid(f"A receipt has exactly the fields {', '.join(FIELDS)}; "
                             f"missing {missing or 'none'}, unexpected {extra[:5] or 'none'}.")
    _check_fields(obj)
    sig_text = obj["signature"]
    try:
        if not isinstance(sig_text, str) or len(sig_text) > 100:
            raise ValueError("not a short text")
        signature = b64.decode(sig_text)
    except ValueError as exc:
        raise ReceiptInvalid(f"Receipt field 'signature' must be base64 of 64 bytes: {exc}.",
                             param="signature") from exc
    if len(signature) != 64:
        raise ReceiptInvalid(f"Receipt field 'signature' must be 64 bytes, not {len(signature)}.",
                             param="signature")
    return Receipt(
        job_id=obj["job_id"], model_digest=obj["model_digest"], prompt_sha256=obj["prompt_sha256"],
        output_sha256=obj["output_sha256"], prompt_tokens=obj["prompt_tokens"],
        completion_tokens=obj["completion_tokens"], worker=obj["worker"],
        finished_at=obj["finished_at"], signature=signature,
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ReceiptInvalid("A receipt names a field twice.")
    return d


def parse(data: bytes | str) -> Receipt:
    """A receipt from its wire form (from a stranger: anything may arrive). Malformed input of
    any kind raises ReceiptInvalid; nothing else escapes."""
    if isinstance(data, str):
        if len(data) > MAX_RECEIPT_BYTES:
            raise ReceiptInvalid(f"A receipt is at most {MAX_RECEIPT_BYTES} bytes; this one is longer.")
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, bytes | bytearray):
        raise ReceiptInvalid(f"A receipt is JSON text, not {type(data).__name__}.")
    if len(data) > MAX_RECEIPT_BYTES:
        raise ReceiptInvalid(f"A receipt is at most {MAX_RECEIPT_BYTES} bytes; this one is {len(data)}.")
    try:
        text = bytes(data).decode("ascii")
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ReceiptInvalid(f"A receipt is ASCII JSON; this is not: {str(exc)[:80]}.") from exc
    receipt = from_json(obj)
    if encode(receipt) != bytes(data):
        raise ReceiptInvalid("A receipt must be in its canonical form (sorted keys, no spaces), "
                             "as hearth's encode writes it.")
    return receipt


def _refuse_constant(name: str) -> object:
    raise ReceiptInvalid(f"A receipt holds no {name}.")


def verify(receipt: Receipt, public_key: bytes, prompt: bytes | str | None = None,
           output: bytes | str | None = None) -> None:
    """Raise ReceiptForged unless `public_key` is the worker's (its node id is the receipt's
    worker), the key signed this receipt, and, when given, the prompt and output hash to what the
    receipt records."""
    if not isinstance(public_key, bytes) or len(public_key) != 32 or node_id_of(public_key) != receipt.worker:
        raise ReceiptForged(f"Receipt for job {receipt.job_id!r} names worker {receipt.worker!r}, "
                            "but the key given is not that worker's.", param="worker")
    try:
        _check_fields(receipt.body())
        VerifyKey(public_key).verify(receipt.signed_bytes(), receipt.signature)
    except ReceiptInvalid as exc:
        raise ReceiptForged(f"Receipt for job {receipt.job_id!r} is not well formed: {exc.message}") from exc
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise ReceiptForged(f"Receipt for job {receipt.job_id!r} is not signed by worker "
                            f"{receipt.worker!r}; do not pay or trust it.", param="signature") from exc
    for name, given, recorded in (("prompt", prompt, receipt.prompt_sha256),
                                  ("output", output, receipt.output_sha256)):
        if given is not None and sha256_hex(given) != recorded:
            raise ReceiptForged(f"Receipt for job {receipt.job_id!r} covers a different {name} "
                                f"(sha256 {recorded[:12]}…) than the one given.", param=name)
