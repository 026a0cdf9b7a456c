"""The parent side of the engine: spawns the child, streams its events, notices its death.

llama.cpp aborts its whole process when an RPC peer fails, so the engine never runs inside the
CLI or the server. When the child dies the current request ends with EngineCrashed and the next
request starts a fresh child.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.engine.events import (
    MAX_LINE,
    Done,
    Embedding,
    EngineEvent,
    Error,
    Fatal,
    Progress,
    Ready,
    ReplyEvent,
    decode,
)
from hearth.engine.protocol import ProtocolError, encode_request
from hearth.errors import ContextOverflow, EngineCrashed, EngineFailed, HearthError, InvalidRequest

_ERRORS: dict[str, type[HearthError]] = {
    "context_length_exceeded": ContextOverflow,
    "invalid_request": InvalidRequest,
}
LOAD_TIMEOUT_S = 300.0
_STREAM_LIMIT = MAX_LINE  # one event a line; the longest is a group of embedding vectors
log = logging.getLogger("hearth.engine")


@dataclass(frozen=True)
class _Crashed:
    """Put on each waiting request's queue when the child is gone; never on the wire."""

    returncode: int


@dataclass(frozen=True)
class EngineConfig:
    model_name: str
    model_path: Path
    n_ctx: int
    n_threads: int
    log_path: Path
    """Where the child's stderr (llama.cpp's own messages) goes."""
    rpc: tuple[str, ...] = ()
    """Leased ggml RPC servers (host:port) that hold part of the model."""
    split: tuple[float, ...] = ()
    """Shares of the layers: one per RPC server, then optionally this machine's."""
    parallel: int = 1
    """Sequences decoded together (slots), each with a context of n_ctx tokens."""


class EngineProcess:
    """One engine child for one model; up to `parallel` requests run in it at once (more wait in
    the child), each with its own event queue."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queues: dict[str, asyncio.Queue[ReplyEvent | Error | _Crashed]] = {}
        self._ids = itertools.count(1)
        self.n_ctx = 0
        self.parallel = 1
        """Requests the child decodes at once (its slots), from its Ready."""
        self.load_ms = 0.0
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, on_progress: Callable[[float], None] | None = None) -> None:
        """Start the child and wait until the model is loaded; on_progress gets fractions 0..1."""
        env = dict(os.environ, GGML_NO_BACKTRACE="1")
        cfg = self.config
        cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = cfg.log_path.stat().st_size if cfg.log_path.exists() else 0
        with cfg.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hearth.engine.worker", "--model", str(cfg.model_path),
                "--n-ctx", str(cfg.n_ctx), "--threads", str(cfg.n_threads), "--parallel", str(cfg.parallel),
                *[arg for ep in cfg.rpc for arg in ("--rpc", ep)],
                *(["--split", ",".join(f"{s:g}" for s in cfg.split)] if cfg.split else []),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, env=env, limit=_STREAM_LIMIT,
            )
        assert self._proc.stdout is not None
        deadline = asyncio.get_running_loop().time() + LOAD_TIMEOUT_S
        while True:
            try:
                line = await asyncio.wait_for(self._proc.stdout.readline(),
                                              max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError as exc:
                await self.stop()
                raise EngineFailed(f"The engine did not load {cfg.model_name} within {LOAD_TIMEOUT_S:.0f} s.") from exc
            event = self._decode(line)
            if isinstance(event, Progress):
                if on_progress is not None:
                    on_progress(event.fraction)
                continue
            break
        if not isinstance(event, Ready):
            detail = event.message if isinstance(event, Fatal | Error) else await self._stderr_tail()
            await self.stop()
            raise EngineFailed(f"The engine could not start {cfg.model_name}: {detail}")
        self.n_ctx = event.n_ctx
        self.parallel = event.parallel
        self.load_ms = event.load_ms
        self._reader = asyncio.create_task(self._read_events())

    async def _stderr_tail(self) -> str:
        assert self._proc is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._proc.wait(), 5)
        with self.config.log_path.open("rb") as log:
            log.seek(self._log_offset)
            tail = log.read().decode(errors="replace")[-2000:].strip()
        return tail or f"no output (see {self.config.log_path})"

    def _decode(self, line: bytes) -> EngineEvent | None:
        """The event on a line; None at the end of the stream or for a malformed line (logged)."""
        if not line:
            return None
        try:
            return decode(line)
        except ProtocolError as exc:
            log.warning("engine %s sent a malformed line (%s); ignoring it", self.pid, exc)
            return None

    async def _read_events(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while line := await self._proc.stdout.readline():
                event = self._decode(line)
                if event is None or isinstance(event, Progress | Ready | Fatal) or event.id is None:
                    continue  # only a request's events go on; the others belong to start()
                queue = self._queues.get(event.id)
                if queue is not None:
                    queue.put_nowait(event)
        except ValueError as exc:  # a line over the limit: the protocol is broken, end the child
            log.error("engine %s sent an oversized line (%s); stopping it", self.pid, exc)
        finally:
            if self._proc.returncode is None:  # stdout gone or broken: never wait on a live child
                self._proc.kill()
            code = await self._proc.wait()
            for queue in self._queues.values():
                queue.put_nowait(_Crashed(code))

    async def request(self, op: str, **fields: Any) -> AsyncGenerator[ReplyEvent, None]:
        """Send one request and yield its events until Done or Embedding; an Error is raised.

        Leaving the iteration early (client gone, Ctrl-C) cancels the generation in the child.
        """
        if not self.alive:
            raise EngineCrashed("The engine is not running; the next request starts a new one.")
        assert self._proc is not None and self._proc.stdin is not None
        rid = str(next(self._ids))
        queue: asyncio.Queue[ReplyEvent | Error | _Crashed] = asyncio.Queue()
        self._queues[rid] = queue
        finished = False
        try:
            self._proc.stdin.write(encode_request({"op": op, "id": rid, **fields}))
            await self._proc.stdin.drain()
            while True:
                event = await queue.get()
                if isinstance(event, _Crashed):
                    finished = True
                    raise EngineCrashed(
                        f"The engine process exited (code {event.returncode}) during the request; "
                        "the next request starts a new one."
                    )
                if isinstance(event, Error):
                    finished = True
                    raise _ERRORS.get(event.code, EngineFailed)(event.message, param=event.param)
                yield event
                if isinstance(event, Done | Embedding):
                    finished = True
                    return
        except (BrokenPipeError, ConnectionResetError) as exc:
            finished = True
            raise EngineCrashed("The engine process is gone; the next request starts a new one.") from exc
        finally:
            self._queues.pop(rid, None)
            if not finished and self.alive:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
                    self._proc.stdin.write(encode_request({"op": "cancel", "id": rid}))

    def kill(self) -> None:
        """End the child at once; a request in flight then fails with EngineCrashed."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 3)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
