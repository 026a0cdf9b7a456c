"""One GGUF split across real ggml RPC servers on loopback: same greedy output as solo."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.engine.events import Token
from hearth.engine.supervisor import EngineConfig, EngineProcess
from hearth.ggml.hello import RpcVersion
from hearth.ggml.process import RpcServerProcess

pytestmark = pytest.mark.slow
ASK = [{"role": "user", "content": "What is the capital of France?"}]
IDLE_RSS: dict[int, int] = {}
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": 1, "stop": [], "max_tokens": 24}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def rpc_servers(tmp_path: Path) -> Iterator[list[RpcServerProcess]]:
    servers = [RpcServerProcess("127.0.0.1", cache_dir=tmp_path / "cache", log_path=tmp_path / f"rpc{i}.log")
               for i in range(2)]
    try:
        for s in servers:
            assert s.start() == RpcVersion(7, 0, 0)
        yield servers
    finally:
        for s in servers:
            s.stop()


async def reply(config: EngineConfig, servers: list[RpcServerProcess] | None = None) -> str:
    engine = EngineProcess(config)
    await engine.start()
    try:
        for s in servers or []:
            assert s.pid is not None
            # While the engine is loaded, each server holds its share of the weights (MB, not KB).
            assert rss_kib(s.pid) - IDLE_RSS[s.pid] > 10_000, "the layers did not go to the RPC server"
        parts = [ev.text async for ev in engine.request("chat", messages=ASK, **GREEDY) if isinstance(ev, Token)]
        return "".join(parts)
    finally:
        await engine.stop()


def test_greedy_output_is_identical_solo_and_split(smollm2_path: Path, tmp_path: Path,
                                                   rpc_servers: list[RpcServerProcess]) -> None:
    log = tmp_path / "engine.log"
    base: dict[str, Any] = {"model_name": "smollm2-135m", "model_path": smollm2_path, "n_ctx": 2048,
                            "n_threads": 2, "log_path": log}
    solo = asyncio.run(reply(EngineConfig(**base)))
    for s in rpc_servers:
        assert s.pid is not None
        IDLE_RSS[s.pid] = rss_kib(s.pid)
    one = asyncio.run(reply(EngineConfig(**base, rpc=(rpc_servers[0].endpoint,)), rpc_servers[:1]))
    three_way = asyncio.run(reply(EngineConfig(**base, rpc=tuple(s.endpoint for s in rpc_servers),
                                               split=(1.0, 1.0, 1.0)), rpc_servers))
    assert solo and one == solo and three_way == solo
    assert all(s.alive for s in rpc_servers)


ASKS = [ASK, [{"role": "user", "content": "How is bread made?"}],
        [{"role": "user", "content": "Write a short poem about the sea."}]]


async def replies_at_once(config: EngineConfig) -> tuple[list[str], list[str]]:
    """Each ask alone, then all three at once, on one engine."""
    engine = EngineProcess(config)
    await engine.start()

    async def one(messages: Any) -> str:
        return "".join([ev.text async for ev in engine.request("chat", messages=messages, **GREEDY)
                        if isinstance(ev, Token)])
    try:
        assert engine.parallel == 3
        alone = [await one(m) for m in ASKS]
        return alone, list(await asyncio.gather(*(one(m) for m in ASKS)))
    finally:
        await engine.stop()


def test_a_split_engine_streams_three_at_once_with_the_texts_of_solo(smollm2_path: Path, tmp_path: Path,
                                                                      rpc_servers: list[RpcServerProcess]) -> None:
    """Three sequences decoded together over two RPC servers (one network round trip per step for
    all three): each text equals its text alone, and equals the unsplit engine's."""
    base: dict[str, Any] = {"model_name": "smollm2-135m", "model_path": smollm2_path, "n_ctx": 1024,
                            "n_threads": 1, "log_path": tmp_path / "engine.log", "parallel": 3}
    local_alone, local_together = asyncio.run(replies_at_once(EngineConfig(**base)))
    split_alone, split_together = asyncio.run(replies_at_once(EngineConfig(
        **base, rpc=tuple(s.endpoint for s in rpc_servers), split=(1.0, 1.0, 1.0))))
    assert all(local_alone) and len(set(local_alone)) == 3
    assert split_together == split_alone == local_alone == local_together
