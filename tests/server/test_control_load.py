"""POST /hearth/control/load with the real store and model: pull progress, then the engine loads it.

The data folder starts empty, so smollm2-135m is pulled (imported from its package by the same
functions `hearth pull` uses) before it is loaded: one real model load for this module.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hearth.net.http_errors import install_error_handlers
from hearth.orchestrator.engines import EnginePool
from hearth.server.control_routes import LOAD_PATH, add_routes
from hearth.settings import load_settings
from tests.conftest import N_CTX

pytestmark = pytest.mark.slow


def test_load_pulls_then_loads_with_progress_lines_and_events(tmp_path: Path) -> None:
    config = load_settings(home=tmp_path, n_ctx=N_CTX, n_threads=2)
    events: list[tuple[str, str, dict[str, Any]]] = []

    def publish(kind: str, message: str, **data: Any) -> None:
        events.append((kind, message, data))

    async def main() -> None:
        app = FastAPI()
        install_error_handlers(app)
        steer = add_routes(app, config, EnginePool(config), publish)
        transport = httpx.ASGITransport(app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=120) as c:
                first = asyncio.create_task(c.post(LOAD_PATH, json={"model": "smollm2-135m"}))
                await asyncio.sleep(0.3)
                busy = await c.post(LOAD_PATH, json={"model": "gemma3-270m"})
                assert busy.status_code == 409 and busy.json()["error"]["code"] == "load_under_way", busy.text
                assert "smollm2-135m is being loaded" in busy.json()["error"]["message"]
                r = await first
                assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
                lines = [json.loads(line) for line in r.text.splitlines()]
                assert lines[0] == {"status": "started", "model": "smollm2-135m", "pull": True}
                phases = [line["phase"] for line in lines if line["status"] == "progress"]
                assert "pull" in phases and "load" in phases and phases.index("pull") < phases.index("load")
                assert lines[-1] == {"status": "loaded", "model": "smollm2-135m"}
                assert steer.engine is not None and steer.engine.alive
                assert config.models_dir.joinpath("manifests").exists() or steer.store.get("smollm2-135m")
                again = await c.post(LOAD_PATH, json={"model": "smollm2-135m"})  # stored and loaded: at once
                assert [json.loads(x)["status"] for x in again.text.splitlines()] == ["started", "loaded"]
        finally:
            await steer.close()

    asyncio.run(main())
    kinds = [kind for kind, _, _ in events]
    assert "load_progress" in kinds and kinds.count("model_loaded") == 2
    progress = [data for kind, _, data in events if kind == "load_progress"]
    assert {p["phase"] for p in progress} == {"pull", "load"}
    assert all(set(p) <= {"status", "model", "phase", "fraction", "done", "total"} for p in progress)
    assert any(m.startswith("pulling smollm2-135m") for k, m, _ in events if k == "load_progress")
