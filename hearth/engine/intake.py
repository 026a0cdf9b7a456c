"""The engine child's intake: requests from the parent's pipe into the scheduler, events back.

A reader thread parses requests and cancels (`read_requests`); the main thread (`serve`) takes
requests between decode steps and writes each step's events in one go (`Emitter`). When a
request wakes an idle engine, `serve` waits a few milliseconds for the rest of a burst
(`gather_wait`): the parent forwards requests that reached it together a few milliseconds
apart, and a burst whose prompts are evaluated in one step starts streaming together, as in
llama-server, instead of the first stream's prompt step running alone and the others' after it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from typing import Any, BinaryIO

from hearth.engine.events import EngineEvent, Error, encode
from hearth.engine.protocol import ProtocolError, decode_request
from hearth.engine.scheduler import Scheduler

GATHER_S = 0.004
"""After a request wakes an idle engine, how long the engine waits for another before its first
step; each arrival waits as long again, up to GATHER_MAX_S after the first."""
GATHER_MAX_S = 0.015
"""The longest a burst's first request waits for the rest (measured here: the parent forwards
four requests sent together within 0.5 to 13 ms)."""

Inbox = queue.Queue[dict[str, Any] | None]


def gather_wait(now: float, first: float, last: float, waiting: int, free: int) -> float:
    """Seconds to wait for one more request of a burst that arrived at `first`..`last` (clock
    seconds), with `waiting` requests in hand for `free` slots; 0: start decoding now."""
    if waiting >= free:
        return 0.0
    return max(0.0, min(first + GATHER_MAX_S, last + GATHER_S) - now)


class Emitter:
    """Writes one event per line to the protocol pipe; both threads share it. The scheduler's
    events are held (`hold`) and written together after each step (`send`), so the parent reads a
    step's tokens in one wake-up rather than one per token per sequence."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._held: list[bytes] = []

    def __call__(self, event: EngineEvent) -> None:
        """Write an event now (after any held ones)."""
        data = encode(event)
        with self._lock:
            self._stream.write(b"".join([*self._held, data]))
            self._held.clear()
            self._stream.flush()

    def hold(self, event: EngineEvent) -> None:
        data = encode(event)
        with self._lock:
            self._held.append(data)

    def send(self) -> None:
        """Write the held events, in the order they were held."""
        with self._lock:
            if self._held:
                self._stream.write(b"".join(self._held))
                self._held.clear()
                self._stream.flush()


def read_requests(lines: Iterable[bytes], inbox: Inbox, cancels: dict[str, threading.Event],
                  out: Emitter) -> None:
    """Requests into the inbox, each with its cancel event in `cancels` (the scheduler removes
    it when the request ends); a cancel sets the event. A malformed line gets a protocol Error."""
    for line in lines:
        try:
            msg = decode_request(line)
        except ProtocolError as exc:
            out(Error(None, "protocol", str(exc)))
            continue
        if msg["op"] == "cancel":
            ev = cancels.get(str(msg.get("id")))
            if ev is not None:
                ev.set()
            continue
        cancels[str(msg.get("id"))] = threading.Event()
        inbox.put(msg)
    # The pipe closed: the parent is gone (or stopping us). Stop the requests in hand at the next
    # step rather than decoding on for nobody.
    for ev in list(cancels.values()):
        ev.set()
    inbox.put(None)


def serve(engine: Any, inbox: Inbox, cancels: dict[str, threading.Event], out: Emitter) -> None:
    """Take requests between decode steps (waiting for one only when nothing runs, and for the
    rest of a burst when one wakes the engine) until the inbox ends, then finish what was
    cancelled. `engine`: hearth.engine.worker.Engine."""
    sched = Scheduler(engine, engine.decoder, out.hold, cancels=cancels)
    decoder = engine.decoder
    closing = False
    while not (closing and sched.idle):
        burst: list[float] = []  # arrival times of the requests that woke the idle engine
        while not closing:
            wait: float | None = 0.0
            if sched.idle:
                wait = None
            elif burst:
                wait = gather_wait(time.monotonic(), burst[0], burst[-1], len(sched.waiting),
                                   decoder.parallel - decoder.active)
            try:
                req = inbox.get(block=True, timeout=wait) if wait is None or wait > 0 else inbox.get_nowait()
            except queue.Empty:
                break
            if req is None:
                closing = True
                sched.cancel_all()
            elif str(req.get("id")) in cancels:
                if burst or sched.idle:
                    burst.append(time.monotonic())
                sched.submit(req, cancels[str(req.get("id"))])
        sched.tick()
        out.send()
