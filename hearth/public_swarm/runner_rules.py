"""The public worker's decisions, with no I/O: when to take a job, what to ask the engine, how to frame its output.

`hearth contribute` runs jobs on this machine's (or household's) engine pool (hearth.public_swarm.runner).
Everything it decides is here, so tests drive it without sockets or a model:
- `Hours`: the local hours in which jobs are taken (`--hours 22-07`); outside them offers are
  declined `off_hours`.
- `UploadBudget`: output bytes sent per local day (`--upload-cap 50M`); past it offers are declined
  `upload_cap` (a job already running is finished: its requester is owed the rest).
- `engine_fields`: an Offer's JobRequest as the engine's request fields (the same fields
  `EnginePool.run` takes from the HTTP server), its Resume as `resume` ids + `resumed_text`, so a job
  moved from a dead worker continues exactly where that worker stopped.
- `score_fields`: a spot-check Offer (`check` set) as the engine's "score" request: the job's prompt or
  messages as generate would evaluate them, the earlier workers' ids (a Resume) as context, then the
  ids to score.
- `Framer`: engine Tokens -> protocol Tokens frames. A frame carries at least one token id, so text
  without ids (what a resumed engine re-sends of the dead worker's held-back text) rides on the next
  frame that has ids; ids and characters per frame stay within the protocol's bounds.
- `engine_slots`, `jobs_at_once`: how many jobs the worker takes at once (its Hello's max_jobs): as
  many as its engine decodes together (its slots), unless the owner's `--max-jobs` says otherwise.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import InvalidRequest
from hearth.public_swarm.protocol.messages import (
    MAX_CHARS_PER_TOKEN,
    MAX_IDS_PER_FRAME,
    MAX_JOBS,
    CheckRequest,
    JobRequest,
)
from hearth.units import parse_size

OFF_HOURS = "off_hours"
UPLOAD_CAP = "upload_cap"

_HOURS = re.compile(r"^\s*(\d{1,2})\s*-\s*(\d{1,2})\s*$")


@dataclass(frozen=True)
class Hours:
    """Local hours [start, end) in which jobs are taken; start > end wraps midnight (22-07 is 22:00 to 06:59)."""

    start: int
    end: int

    def __contains__(self, hour: int) -> bool:
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end

    def __str__(self) -> str:
        return f"{self.start:02d}:00-{self.end:02d}:00"


def parse_hours(text: str) -> Hours:
    """`22-07` or `9-17`: whole local hours, 0-24, the end not included (0-24 is all day). Raises InvalidRequest."""
    m = _HOURS.match(text)
    if not m:
        raise InvalidRequest(f"--hours {text!r}: write the hours as START-END, e.g. 22-07 (local time).",
                             param="hours")
    start, end = int(m.group(1)), int(m.group(2))
    if not (0 <= start <= 23 and 0 <= end <= 24):
        raise InvalidRequest(f"--hours {text!r}: hours run 0-23 (an end may be 24).", param="hours")
    if start == end:
        raise InvalidRequest(f"--hours {text!r} is an empty window; leave --hours out to take jobs all day.",
                             param="hours")
    return Hours(start, end)


def parse_cap(text: str) -> int:
    """`--upload-cap 50M`: bytes a day (a bare number is bytes), more than 0."""
    try:
        cap = parse_size(text)
    except InvalidRequest as exc:
        raise InvalidRequest(f"--upload-cap: {exc.message}", param="upload_cap") from None
    if cap < 1:
        raise InvalidRequest(f"--upload-cap {text!r} would decline every job; give a size such as 50M.",
                             param="upload_cap")
    return cap


@dataclass
class UploadBudget:
    """Output bytes (UTF-8 of the text streamed) sent on each local day, against a daily cap."""

    cap: int
    day: datetime.date | None = None
    sent: int = 0

    def _roll(self, today: datetime.date) -> None:
        if today != self.day:
            self.day, self.sent = today, 0

    def spend(self, nbytes: int, today: datetime.date) -> None:
        self._roll(today)
        self.sent += nbytes

    def exhausted(self, today: datetime.date) -> bool:
        self._roll(today)
        return self.sent >= self.cap


@dataclass
class Admission:
    """Whether to take an offer now: a decline reason, or None. WorkerSession already declines
    models not offered and bounds jobs to max_jobs; these are the owner's own limits."""

    hours: Hours | None = None
    upload: UploadBudget | None = None
    clock: Callable[[], datetime.datetime] = field(default=datetime.datetime.now)
    """Local wall-clock time."""

    def refusal(self) -> str | None:
        now = self.clock()
        if self.hours is not None and now.hour not in self.hours:
            return OFF_HOURS
        if self.upload is not None and self.upload.exhausted(now.date()):
            return UPLOAD_CAP
        return None

    def sent(self, text: str) -> None:
        if self.upload is not None:
            self.upload.spend(len(text.encode("utf-8")), self.clock().date())


def admission(hours: str | None, upload_cap: str | None) -> Admission:
    """The owner's limits from `--hours` and `--upload-cap` (None: no limit). Raises InvalidRequest."""
    return Admission(hours=parse_hours(hours) if hours is not None else None,
                     upload=UploadBudget(parse_cap(upload_cap)) if upload_cap is not None else None)


def engine_fields(request: JobRequest) -> tuple[str, dict[str, Any]]:
    """The engine op ("chat" or "complete") and the fields `EnginePool.run` takes for this job.

    The engine samples greedily at temperature 0 and otherwise with its own top-k (40), so a job's
    top_k is not passed on, except that top_k 1 is greedy (as the coordinator's checks take it);
    max_tokens counts the resumed tokens too, as the protocol's does. A job always reuses its
    slot's cache exactly (settings.prompt_reuse), so its text is what a fresh engine gives."""
    s = request.sampling
    temperature = 0.0 if s.top_k == 1 else s.temperature
    fields: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": temperature, "top_p": s.top_p,
                              "stop": list(s.stop), "exact": True}  # a checker must get the same text
    if s.seed is not None:
        fields["seed"] = s.seed
    if request.resume is not None and request.resume.token_ids:
        fields["resume"] = list(request.resume.token_ids)
        fields["resumed_text"] = request.resume.text
    if request.messages is not None:
        fields["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        return "chat", fields
    fields["prompt"] = request.prompt
    return "complete", fields


def score_fields(request: JobRequest, check: CheckRequest) -> dict[str, Any]:
    """The fields of the engine's "score" op for a spot-check: the checked job's input (the chat
    template applied exactly as for generate), what earlier workers streamed before the checked
    ids as `context` (a Resume), and the ids with top_k. Sampling matters only to a replay."""
    fields: dict[str, Any] = {"token_ids": list(check.token_ids), "top_k": check.top_k}
    if check.replay:  # a sampled job re-run with its seed: the sampler's settings matter too
        fields.update(replay=True, temperature=request.sampling.temperature, top_p=request.sampling.top_p,
                      seed=request.sampling.seed)
    if request.resume is not None and request.resume.token_ids:
        fields["context"] = list(request.resume.token_ids)
    if request.messages is not None:
        fields["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    else:
        fields["prompt"] = request.prompt
    return fields


@dataclass
class Framer:
    """Engine tokens -> (text, ids) frames: every frame has 1..MAX_IDS_PER_FRAME ids and at most
    MAX_CHARS_PER_TOKEN characters per id; text that cannot go yet waits in `pending`."""

    pending: str = ""

    def push(self, text: str, ids: tuple[int, ...] | list[int]) -> list[tuple[str, list[int]]]:
        self.pending += text
        frames = []
        ids = list(ids)
        for at in range(0, len(ids), MAX_IDS_PER_FRAME):
            chunk = ids[at:at + MAX_IDS_PER_FRAME]
            room = MAX_CHARS_PER_TOKEN * len(chunk)
            frames.append((self.pending[:room], chunk))
            self.pending = self.pending[room:]
        return frames


def engine_slots(status: Mapping[str, Any], parallel: int | None = None) -> int:
    """How many requests the local engine decodes at once: the pool status's `slots` (the loaded
    engine's own count, from its Ready), else `parallel` (HEARTH_PARALLEL), else 1; at most MAX_JOBS."""
    for value in (status.get("slots"), parallel):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return min(MAX_JOBS, value)
    return 1


def jobs_at_once(asked: int | None, slots: int) -> tuple[int, str]:
    """The max_jobs a worker declares in its Hello, and the line that says so: `--max-jobs` when the
    owner gave it, else the engine's `slots`. A --max-jobs above the slots is kept (the owner's
    choice), but the jobs past the slots then wait here for a slot, so the line says that."""
    slots = max(1, min(MAX_JOBS, slots))
    if asked is None:
        return slots, (f"taking up to {slots} job(s) at once: the engine decodes {slots} at a time "
                       "(its slots: HEARTH_PARALLEL, or chosen from memory); --max-jobs takes fewer")
    if asked <= slots:
        return asked, f"taking up to {asked} job(s) at once (--max-jobs); the engine decodes {slots} at a time"
    return asked, (f"taking up to {asked} jobs at once (--max-jobs), but the engine decodes {slots} at a time: "
                   f"jobs past {slots} wait here for a slot (raise HEARTH_PARALLEL, or lower --max-jobs)")
