"""The engine child with the real model: streaming, cancelling, dying, restarting."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from hearth.engine.events import Done, Token
from hearth.engine.supervisor import EngineConfig, EngineProcess
from hearth.errors import ContextOverflow, EngineCrashed, EngineFailed
from hearth.models.store import ModelStore
from hearth.orchestrator.engines import EnginePool
from hearth.settings import Settings

pytestmark = pytest.mark.slow
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": 1, "stop": []}
ASK = [{"role": "user", "content": "List the planets of the solar system."}]


def _config(path: Path, home: Path) -> EngineConfig:
    return EngineConfig("smollm2-135m", path, 2048, 2, home / "logs" / "engine.log")


async def _text(events: Any) -> tuple[str, Done]:
    parts, done = [], None
    async for ev in events:
        if isinstance(ev, Token):
            parts.append(ev.text)
        elif isinstance(ev, Done):
            done = ev
    assert done is not None, "the reply never finished"
    return "".join(parts), done


def test_stream_cancel_and_crash(smollm2_path: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = EngineProcess(_config(smollm2_path, tmp_path))
        await engine.start()
        try:
            full, done = await _text(engine.request("chat", messages=ASK, max_tokens=24, **GREEDY))
            assert done.completion_tokens == 24 and done.finish_reason == "length"
            assert done.prompt_tokens > 5 and full

            # Leave a stream early: the child cancels it and serves the next request normally.
            events = engine.request("chat", messages=ASK, max_tokens=500, **GREEDY)
            got = 0
            async for ev in events:
                got += isinstance(ev, Token)
                if got == 3:
                    break
            await events.aclose()
            again, _ = await _text(engine.request("chat", messages=ASK, max_tokens=24, **GREEDY))
            assert again == full

            with pytest.raises(ContextOverflow, match="context window is 2048"):
                await _text(engine.request("complete", prompt="word " * 3000, max_tokens=4, **GREEDY))

            # kill -9 mid-stream: a clean EngineCrashed, not a hang.
            events = engine.request("chat", messages=ASK, max_tokens=500, **GREEDY)
            with pytest.raises(EngineCrashed, match="exited"):
                async for ev in events:
                    if isinstance(ev, Token):
                        assert engine.pid is not None
                        os.kill(engine.pid, signal.SIGKILL)
            assert not engine.alive
            with pytest.raises(EngineCrashed):
                await _text(engine.request("chat", messages=ASK, max_tokens=4, **GREEDY))
        finally:
            await engine.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_pool_restarts_a_dead_engine(models_home: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, n_ctx=2048, n_threads=2)

    async def scenario() -> None:
        pool = EnginePool(settings, store=ModelStore(models_home / "models"))  # share the imports
        try:
            first, _ = await _text(pool.run("smollm2-135m", "chat", messages=ASK, max_tokens=12, **GREEDY))
            old = pool.engine
            assert old is not None and old.pid
            os.kill(old.pid, signal.SIGKILL)
            await asyncio.sleep(0.2)
            second, _ = await _text(pool.run("smollm2-135m", "chat", messages=ASK, max_tokens=12, **GREEDY))
            assert second == first
            assert pool.restarts == 1 and pool.engine is not old
            # switching model replaces the engine
            await _text(pool.run("gemma3-270m", "complete", prompt="Hello", max_tokens=4, **GREEDY))
            assert pool.engine is not None and pool.engine.config.model_name == "gemma3-270m"
        finally:
            await pool.close()

    asyncio.run(asyncio.wait_for(scenario(), 180))


def test_a_model_that_cannot_load_fails_clearly(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)

    async def scenario() -> None:
        engine = EngineProcess(_config(bogus, tmp_path))
        with pytest.raises(EngineFailed, match="could not start"):
            await engine.start()
        assert not engine.alive

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_worker_survives_garbage_on_its_pipe(smollm2_path: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = EngineProcess(_config(smollm2_path, tmp_path))
        await engine.start()
        try:
            assert engine._proc is not None and engine._proc.stdin is not None
            engine._proc.stdin.write(b"this is not json\n{\"op\": \"explode\"}\n")
            await engine._proc.stdin.drain()
            text, done = await _text(engine.request("complete", prompt="Hello", max_tokens=3, **GREEDY))
            assert done.completion_tokens == 3 and engine.alive
        finally:
            await engine.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_resume_continues_exactly_where_a_stream_stopped(smollm2_path: Path, tmp_path: Path) -> None:
    """What failover relies on: prompt + the ids generated so far gives the same continuation."""

    async def scenario() -> None:
        engine = EngineProcess(_config(smollm2_path, tmp_path))
        await engine.start()
        try:
            events = [ev async for ev in engine.request("chat", messages=ASK, max_tokens=40, **GREEDY)]
            tokens = [ev for ev in events if isinstance(ev, Token)]
            full = "".join(ev.text for ev in tokens)
            ids = [i for ev in tokens for i in ev.ids]
            last = events[-1]
            assert isinstance(last, Done) and len(ids) == last.completion_tokens == 40
            for cut in (1, 7, 25):
                had = "".join(ev.text for ev in tokens[:cut])
                resume = [i for ev in tokens[:cut] for i in ev.ids]
                rest = [ev async for ev in engine.request("chat", messages=ASK, max_tokens=40, resume=resume,
                                                          resumed_text=had, **GREEDY)]
                assert had + "".join(ev.text for ev in rest if isinstance(ev, Token)) == full
                end = rest[-1]
                assert isinstance(end, Done) and end.completion_tokens == 40 and end.prompt_tokens == last.prompt_tokens
        finally:
            await engine.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_loading_reports_progress(smollm2_path: Path, tmp_path: Path) -> None:
    seen: list[float] = []

    async def scenario() -> None:
        engine = EngineProcess(_config(smollm2_path, tmp_path))
        await engine.start(seen.append)
        await engine.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert len(seen) > 2 and seen == sorted(seen) and seen[-1] == 1.0
