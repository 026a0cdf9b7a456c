"""The engine child's intake (hearth.engine.intake): how long a burst is gathered, events written a
step at a time, malformed pipe lines, and a burst arriving apart starting in one step with the
real model."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from hearth.engine import intake
from hearth.engine.events import Done, EngineEvent, Error, Start, Token, decode
from hearth.engine.intake import GATHER_MAX_S, GATHER_S, Emitter, Inbox, gather_wait, read_requests, serve
from hearth.engine.protocol import encode_request


class Writes:
    """A pipe's far end: each write the Emitter makes, as it made it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self.lock:
            self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def events(self) -> list[list[EngineEvent]]:
        with self.lock:
            return [[decode(line) for line in chunk.splitlines()] for chunk in self.chunks]


def emitter() -> tuple[Emitter, Writes]:
    writes = Writes()
    return Emitter(cast(BinaryIO, writes)), writes


# -- gather_wait (pure) ------------------------------------------------------------------------
def test_a_burst_waits_for_its_next_request_only_while_slots_are_free() -> None:
    assert gather_wait(10.0, 10.0, 10.0, 1, 4) == pytest.approx(GATHER_S)
    assert gather_wait(10.001, 10.0, 10.0, 1, 4) == pytest.approx(GATHER_S - 0.001)
    assert gather_wait(10.0 + GATHER_S, 10.0, 10.0, 1, 4) == 0.0  # nothing came in time
    assert gather_wait(10.0, 10.0, 10.0, 4, 4) == 0.0  # every slot has a request
    assert gather_wait(10.0, 10.0, 10.0, 1, 1) == 0.0


def test_each_arrival_extends_the_wait_up_to_the_cap() -> None:
    first = 5.0
    last = first + GATHER_MAX_S - GATHER_S / 2  # a late arrival near the cap
    assert gather_wait(last, first, last, 2, 8) == pytest.approx(GATHER_S / 2)
    assert gather_wait(first + GATHER_MAX_S, first, first + GATHER_MAX_S, 3, 8) == 0.0
    assert gather_wait(first + 0.002, first, first + 0.002, 2, 8) == pytest.approx(GATHER_S)


# -- Emitter -----------------------------------------------------------------------------------
def test_held_events_are_written_together_and_in_order() -> None:
    out, writes = emitter()
    out.hold(Start("a", 3))
    out.hold(Token("a", "x", (1,)))
    assert writes.chunks == []
    out.send()
    out.send()  # nothing held: no empty write
    out.hold(Token("a", "y", (2,)))
    out(Error(None, "protocol", "bad line"))  # written now, after what was held
    assert [[type(e).__name__ for e in chunk] for chunk in writes.events()] == [
        ["Start", "Token"], ["Token", "Error"]]


# -- read_requests -----------------------------------------------------------------------------
def test_malformed_lines_get_a_protocol_error_and_the_rest_go_on() -> None:
    out, writes = emitter()
    inbox: Inbox = queue.Queue()
    cancels: dict[str, threading.Event] = {}
    lines = [b"not json\n", b"{\"op\": \"explode\", \"id\": \"2\"}\n", b"[1, 2]\n", b"\xff\xfe\n",
             encode_request({"op": "complete", "id": "1", "prompt": "hi"}),
             encode_request({"op": "cancel", "id": "1"}),
             encode_request({"op": "cancel", "id": "nobody"})]
    read_requests(lines, inbox, cancels, out)
    errors = [e for chunk in writes.events() for e in chunk]
    assert len(errors) == 4 and all(isinstance(e, Error) and e.code == "protocol" for e in errors)
    assert inbox.get_nowait() == {"op": "complete", "id": "1", "prompt": "hi"}
    assert inbox.get_nowait() is None  # the pipe ended
    assert cancels["1"].is_set()


# -- serve with the real model -----------------------------------------------------------------
@pytest.mark.slow
def test_a_burst_arriving_apart_starts_in_one_step(smollm2_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four requests put 30 ms apart (the gather window widened so that a loaded machine cannot
    make this flaky): all four are admitted before the first step, so the first write with
    tokens carries a first token for each."""
    from hearth.engine.worker import Engine

    monkeypatch.setattr(intake, "GATHER_S", 0.5)
    monkeypatch.setattr(intake, "GATHER_MAX_S", 2.0)
    engine = Engine(str(smollm2_path), 512, 2, parallel=4, llama_ctx=256)
    out, writes = emitter()
    inbox: Inbox = queue.Queue()
    cancels: dict[str, threading.Event] = {}
    loop = threading.Thread(target=serve, args=(engine, inbox, cancels, out))
    loop.start()
    try:
        for i in range(4):
            rid = f"r{i}"
            cancels[rid] = threading.Event()
            inbox.put({"op": "complete", "id": rid, "prompt": f"Fact {i}: the sky is", "max_tokens": 4,
                       "temperature": 0.0, "top_p": 1.0, "seed": 1, "stop": []})
            time.sleep(0.03)
        deadline = time.monotonic() + 120
        while sum(isinstance(e, Done) for chunk in writes.events() for e in chunk) < 4:
            assert time.monotonic() < deadline, writes.events()
            time.sleep(0.05)
    finally:
        inbox.put(None)
        loop.join(60)
        engine.close()
    chunks = writes.events()
    first = next(chunk for chunk in chunks if any(isinstance(e, Token) for e in chunk))
    assert sorted(e.id for e in first if isinstance(e, Token)) == ["r0", "r1", "r2", "r3"]
    assert sorted(e.id for e in first if isinstance(e, Start)) == ["r0", "r1", "r2", "r3"]
    done: list[Any] = [e for chunk in chunks for e in chunk if isinstance(e, Done)]
    assert all(d.finish_reason == "length" and d.completion_tokens == 4 for d in done)
