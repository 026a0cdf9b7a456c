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

from hearth.engine.protocol import EVENTS, ProtocolError, decode, encode
from hearth.errors import ContextOverflow, EngineCrashed, EngineFailed, HearthError, InvalidRequest

_ERRORS: dict[str, type[HearthError]] = {
    "context_length_exceeded": ContextOverflow,
    "invalid_request": InvalidRequest,
}
LOAD_TIMEOUT_S = 300.0
_STREAM_LIMIT = 16 * 1024 * 1024  # one event a line; the longest is a group of embedding vectors
log = logging.getLogger("hearth.engine")


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


class EngineProcess:
    """One engine child for one model; requests go to it one at a time."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.n_ctx = 0
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
                "--n-ctx", str(cfg.n_ctx), "--threads", str(cfg.n_threads),
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
            msg = self._decode(line)
            if msg is not None and msg["event"] == "progress":
                if on_progress is not None:
                    on_progress(float(msg["fraction"]))
                continue
            break
        if msg is None or msg["event"] != "ready":
            detail = msg.get("message") if msg else await self._stderr_tail()
            await self.stop()
            raise EngineFailed(f"The engine could not start {cfg.model_name}: {detail}")
        self.n_ctx = int(msg["n_ctx"])
        self.load_ms = float(msg["load_ms"])
        self._reader = asyncio.create_task(self._read_events())

    async def _stderr_tail(self) -> str:
        assert self._proc is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._proc.wait(), 5)
        with self.config.log_path.open("rb") as log:
            log.seek(self._log_offset)
            tail = log.read().decode(errors="replace")[-2000:].strip()
        return tail or f"no output (see {self.config.log_path})"

    @staticmethod
    def _decode(line: bytes) -> dict[str, Any] | None:
        if not line:
            return None
        try:
            return decode(line, EVENTS, "event")
        except ProtocolError:
            return None

    async def _read_events(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while line := await self._proc.stdout.readline():
                msg = self._decode(line)
                if msg is None:
                    continue
                queue = self._queues.get(str(msg.get("id")))
                if queue is not None:
                    queue.put_nowait(msg)
        except ValueError as exc:  # a line over the limit: the protocol is broken, end the child
            log.error("engine %s sent an oversized line (%s); stopping it", self.pid, exc)
        finally:
            if self._proc.returncode is None:  # stdout gone or broken: never wait on a live child
                self._proc.kill()
            code = await self._proc.wait()
            for queue in self._queues.values():
                queue.put_nowait({"event": "crashed", "returncode": code})

    async def request(self, op: str, **fields: Any) -> AsyncGenerator[dict[str, Any], None]:
        """Send one request and yield its events until 'done' or 'embedding'.

        Leaving the iteration early (client gone, Ctrl-C) cancels the generation in the child.
        """
        if not self.alive:
            raise EngineCrashed("The engine is not running; the next request starts a new one.")
        assert self._proc is not None and self._proc.stdin is not None
        rid = str(next(self._ids))
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._queues[rid] = queue
        finished = False
        try:
            self._proc.stdin.write(encode({"op": op, "id": rid, **fields}))
            await self._proc.stdin.drain()
            while True:
                msg = await queue.get()
                event = msg["event"]
                if event == "crashed":
                    finished = True
                    raise EngineCrashed(
                        f"The engine process exited (code {msg['returncode']}) during the request; "
                        "the next request starts a new one."
                    )
                if event == "error":
                    finished = True
                    cls = _ERRORS.get(str(msg.get("code")), EngineFailed)
                    raise cls(str(msg.get("message")))
                yield msg
                if event in ("done", "embedding"):
                    finished = True
                    return
        except (BrokenPipeError, ConnectionResetError) as exc:
            finished = True
            raise EngineCrashed("The engine process is gone; the next request starts a new one.") from exc
        finally:
            self._queues.pop(rid, None)
            if not finished and self.alive:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
                    self._proc.stdin.write(encode({"op": "cancel", "id": rid}))

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
