"""What a lease may allocate is enforced: a lease too small for a model cannot load it over RPC
(the node and its other leases live on), one big enough can; and the RPC weight cache is the
node's: one folder per lessee (no lessee is served another's tensors), capped, oldest out first."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from pathlib import Path

import httpx
import pytest

from hearth.engine.events import Token
from hearth.engine.supervisor import EngineConfig, EngineProcess
from hearth.errors import HearthError
from hearth.ggml.hello import probe
from hearth.models.store import ModelStore
from hearth.rpc_pool.cache import RpcCache
from tests.rpc_pool.nodes import running_node

ASK = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": 1, "stop": [], "max_tokens": 8}


def lease(source: str, url: str, size: int) -> dict[str, str]:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=60) as c:
        r = c.post(url + "/v1/leases", json={"bytes": size})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def reply_through(model: Path, endpoint: str, log: Path) -> str:
    """Load the whole model onto the leased RPC server and ask it something."""
    engine = EngineProcess(EngineConfig(model.name, model, 2048, 2, log, rpc=(endpoint,)))
    await engine.start()
    try:
        events = [ev async for ev in engine.request("chat", messages=ASK, **GREEDY)]
        return "".join(ev.text for ev in events if isinstance(ev, Token))
    finally:
        await engine.stop()


@pytest.mark.slow
def test_a_lease_cannot_allocate_more_than_its_size(models_home: Path, tmp_path: Path) -> None:
    """Gemma 3 270M whole on one RPC server allocates about 800 MiB there (its output head, and
    logits for a 512-token batch over a 262k vocabulary); a 1-byte lease may map 16 MiB plus the
    slack (process.allowance), under 200 MiB; a 640 MB lease may map about 940 MiB."""
    gemma = ModelStore(models_home / "models").model_path("gemma3-270m")
    with running_node(tmp_path, "--max-memory", "900M") as node:
        small = lease("127.0.0.1", node.url, 1)
        bystander = lease("127.0.0.2", node.url, 1)
        with pytest.raises(HearthError):
            asyncio.run(reply_through(gemma, small["endpoint"], tmp_path / "small.log"))
        # The node and the other lessee's server are unharmed.
        assert httpx.get(node.url + "/v1/node").status_code == 200
        host, port = bystander["endpoint"].rsplit(":", 1)
        assert str(probe(host, int(port))) == "7.0.0"
        big = lease("127.0.0.2", node.url, 640_000_000)
        assert asyncio.run(reply_through(gemma, big["endpoint"], tmp_path / "big.log")).strip()


def saved_paths(logs: Path) -> list[Path]:
    """Cache files the node's RPC servers say they wrote (ggml logs each one)."""
    return [Path(m) for log in logs.glob("rpc-*.log") for m in re.findall(r"saved to '([^']+)'", log.read_text())]


@pytest.mark.slow
def test_rpc_cache_is_per_lessee(smollm2_path: Path, tmp_path: Path) -> None:
    with running_node(tmp_path, "--max-memory", "600M") as node:
        root = tmp_path / "rpc-cache"
        folder = {src: root / hashlib.sha256(src.encode()).hexdigest()[:32] for src in ("127.0.0.1", "127.0.0.2")}
        first = lease("127.0.0.1", node.url, 250_000_000)
        assert asyncio.run(reply_through(smollm2_path, first["endpoint"], tmp_path / "a.log")).strip()
        [saved] = saved_paths(tmp_path / "logs")  # SmolLM2's 30 MB output head, its one tensor over 10 MiB
        assert saved.parent == folder["127.0.0.1"], saved
        assert not [p for p in root.iterdir() if p.is_file()], "a file in the shared cache root"
        second = lease("127.0.0.2", node.url, 250_000_000)
        assert asyncio.run(reply_through(smollm2_path, second["endpoint"], tmp_path / "b.log")).strip()
        # The second lessee had to send its own copy: the first one's was not served to it.
        assert {p.parent for p in saved_paths(tmp_path / "logs")} == set(folder.values())


@pytest.mark.slow
def test_rpc_cache_is_capped_by_the_node_while_leases_run(smollm2_path: Path, tmp_path: Path) -> None:
    with running_node(tmp_path, "--max-memory", "600M", "--cache-size", "20M") as node:
        held = lease("127.0.0.1", node.url, 250_000_000)
        assert asyncio.run(reply_through(smollm2_path, held["endpoint"], tmp_path / "a.log")).strip()
        assert saved_paths(tmp_path / "logs"), "the server cached nothing: nothing to check"
        deadline = time.monotonic() + 3
        while RpcCache(tmp_path / "rpc-cache", 0).used() > 20_000_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert RpcCache(tmp_path / "rpc-cache", 0).used() <= 20_000_000, "the cache outgrew --cache-size"
        assert httpx.get(node.url + "/v1/node").json()["leases"], "the lease ended: the cap was not enforced while it ran"


def write(path: Path, size: int, mtime: float) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))


def test_cache_eviction_is_oldest_first_within_each_share(tmp_path: Path) -> None:
    cache = RpcCache(tmp_path, 100)
    a, b = cache.folder("10.0.0.2"), cache.folder("paired-node-id")
    assert a is not None and b is not None and a != b and a.stat().st_mode & 0o777 == 0o700
    write(a / "old", 40, 1000)
    write(a / "new", 40, 3000)
    assert cache.enforce() == 0  # one lessee alone may use the whole cap
    write(b / "mid", 30, 2000)
    write(b / "newest", 10, 4000)
    # Two lessees: each keeps at most half (50), newest first; then the total fits too.
    assert cache.enforce() == 40
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["mid", "new", "newest"]
    assert RpcCache(tmp_path, 0).folder("x") is None
