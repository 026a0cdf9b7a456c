"""What the coordinator forgets of a finished job, and when (issue 11, no I/O).

The coordinator needs a job's prompt and output only while the job runs. After it ends:

- The output text is the requester's: it is forgotten as soon as it was delivered (the OpenAI
  route's response was sent, or a GET of the final job in `/v1/jobs` returned it), or after the
  result TTL (`ttl_s`, default 24 h) when nobody fetched it. Failed and cancelled jobs never show
  their text to anyone, so theirs goes at the grace period's end.
- The prompt (the request's messages or prompt and its stop strings, the free tier's client
  address) and the token ids are kept for a short grace period (`grace_s`, default 10 min) after
  the job ended, because the coordinator's own checks read them: a spot-check re-scores a finished
  job's token ids under its prompt within minutes, and the books sweep re-reads a job left
  unsettled by a coordinator that died. A job whose spot-check is still pending keeps its prompt,
  token ids and text (the verifier compares the text with the scorer's detokenisation) until the
  check is decided (then the rules above apply at once) or, at most, until the result TTL.
- What books and audit need is never forgotten: state, token counts, who streamed what, price,
  the prompt cap, max_tokens, the receipt and the worker's key.

A forgotten request keeps its shape (`JobSpec.from_json` still reads it: price, prompt cap, kind),
with empty contents and `"forgotten": true`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hearth.errors import HearthError

GRACE_S = 600.0
"""Seconds a finished job's prompt and token ids are kept for the coordinator's own checks."""
RESULT_TTL_S = 86_400.0
"""Seconds an undelivered result (an async job nobody fetched) is kept."""
GRACE_ENV = "HEARTH_PROMPT_GRACE_S"
TTL_ENV = "HEARTH_RESULT_TTL_S"
MAX_S = 30 * 86_400.0
FORGOTTEN = "forgotten"
DELIVERED = "delivered"


class RetentionSettingInvalid(HearthError):
    """A retention setting (HEARTH_PROMPT_GRACE_S, HEARTH_RESULT_TTL_S) that is not a number of
    seconds in range: fix the environment and start the coordinator again."""

    code = "retention_setting_invalid"


@dataclass(frozen=True)
class Policy:
    grace_s: float = GRACE_S
    ttl_s: float = RESULT_TTL_S

    def __post_init__(self) -> None:
        for name, value in (("grace_s", self.grace_s), ("ttl_s", self.ttl_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_S \
                    or not math.isfinite(value):
                raise RetentionSettingInvalid(f"{name} must be seconds from 0 to {MAX_S:g}; got {value!r:.40}.")
        if self.grace_s > self.ttl_s:
            raise RetentionSettingInvalid(f"The prompt grace ({self.grace_s:g} s) must not exceed the result TTL "
                                          f"({self.ttl_s:g} s).")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Policy:
        """The policy from HEARTH_PROMPT_GRACE_S and HEARTH_RESULT_TTL_S (unset: the defaults)."""
        values = {}
        for field, name, default in (("grace_s", GRACE_ENV, GRACE_S), ("ttl_s", TTL_ENV, RESULT_TTL_S)):
            text = env.get(name, "").strip()
            try:
                values[field] = float(text) if text else default
            except ValueError:
                raise RetentionSettingInvalid(f"{name} must be a number of seconds; got {text[:20]!r}.") from None
        return cls(**values)


@dataclass(frozen=True)
class Held:
    """What a final job still holds, as retention sees it."""

    done: bool
    """Done (its text is a result the requester may fetch), not failed or cancelled."""
    ended_at: float
    has_text: bool
    has_prompt: bool
    """Its request's contents or token ids are still stored."""
    delivered: bool
    checking: bool
    """A spot-check of it is pending."""


@dataclass(frozen=True)
class Forget:
    text: bool = False
    prompt: bool = False
    """The request's contents and the token ids."""
    delivered: bool = False
    """Mark the job delivered (its text goes once its pending check is decided)."""

    def __bool__(self) -> bool:
        return self.text or self.prompt or self.delivered


def plan(held: Held, policy: Policy, now: float) -> Forget:
    """What the sweep forgets of a final job now. A pending spot-check holds everything (it reads
    the prompt, the token ids and the text) until it is decided, or at most until the TTL."""
    age = now - held.ended_at
    if held.checking and age < policy.ttl_s:
        return Forget()
    graced = age >= policy.grace_s
    text = held.has_text and (age >= policy.ttl_s or (graced and (held.delivered or not held.done))
                              or (held.delivered and not held.checking))
    return Forget(text=text, prompt=held.has_prompt and graced)


def on_delivery(held: Held, policy: Policy, now: float) -> Forget:
    """What a delivered result's job forgets now: its text at once unless a spot-check of it is
    pending, and whatever the sweep would."""
    swept = plan(held, policy, now)
    return Forget(text=held.has_text and (swept.text or not held.checking), prompt=swept.prompt,
                  delivered=held.done and not held.delivered)


def scrub(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored job request (`JobSpec.to_json`) without its contents: one empty message or an
    empty prompt, no stop strings, no client address; price, prompt cap, kind and limits kept."""
    out = dict(spec)
    request = dict(out.get("request") or {})
    if request.get("messages") is not None:
        request["messages"] = [{"role": "user", "content": ""}]
    if request.get("prompt") is not None:
        request["prompt"] = ""
    sampling = request.get("sampling")
    if isinstance(sampling, Mapping):
        request["sampling"] = {**sampling, "stop": []}
    out["request"] = request
    out["free_address"] = None
    out[FORGOTTEN] = True
    return out


def mark_delivered(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {**spec, DELIVERED: True}


def result_gone(spec: Mapping[str, Any], *, has_text: bool, ended_at: float, policy: Policy,
                now: float) -> Literal["fetched", "expired"] | None:
    """Why a done job's result text is no longer shown: "fetched" once it was delivered (a result
    is returned once, even while a pending spot-check still holds the text), "expired" once the TTL
    forgot it unfetched; None while it can be fetched."""
    if spec.get(DELIVERED):
        return "fetched"
    if not has_text and now - ended_at >= policy.ttl_s:
        return "expired"
    return None
