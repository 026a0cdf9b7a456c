"""Async jobs with real processes: a `hearth coordinator`, a `hearth contribute` worker (the
embedded model; on main it declines every job, so jobs stay queued) and `hearth jobs` itself.

Jobs live in the database: a coordinator killed -9 between submit and status and started again
answers for them (signed through the CLI, and anonymous by the client address). `--wait` waits,
and gives up with exit 9 at its --timeout; malformed input gets exit 2 with the reason."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.identity import NodeIdentity
from hearth.settings import DEFAULT_MODEL
from tests.conftest import HEARTH, REPO, free_port, hearth_env
from tests.public_swarm.worker_proc import FIRST_LINK_S, contributor, coordinator_at, live, wait_for

pytestmark = pytest.mark.slow


def jobs_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEARTH, "jobs", *args], env=hearth_env(home), cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def cli_json(home: Path, *args: str) -> Any:
    r = jobs_cli(home, *args, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_jobs_survive_a_coordinator_killed_and_restarted(tmp_path: Path) -> None:
    port, asker = free_port(), tmp_path / "asker"
    url = f"http://127.0.0.1:{port}"
    me = NodeIdentity.load_or_create(asker)
    log = tmp_path / "w" / "contribute.log"
    # The worker declines every job (--hours: a window that excludes this hour), so the jobs stay
    # queued across the restart: this test is about the queue surviving, not about running them.
    hour = datetime.datetime.now().hour
    with contributor(tmp_path / "w", url, "--hours", f"{(hour + 2) % 24}-{(hour + 3) % 24}"):
        with coordinator_at(tmp_path / "coord", port) as first:
            wait_for("worker linked", lambda: bool(live(url, me)), FIRST_LINK_S, log)
            signed = cli_json(asker, "submit", DEFAULT_MODEL, "Say hi.", "--max-tokens", "8", "--key", "restart-0001",
                              "--coordinator", url)
            assert signed["state"] in ("queued", "running") and signed["model"] == DEFAULT_MODEL
            anon = httpx.post(url + "/v1/jobs", json={"model": DEFAULT_MODEL, "prompt": "Once upon", "max_tokens": 8})
            assert anon.status_code == 202, anon.text
            first.kill()
            first.wait(10)
        with coordinator_at(tmp_path / "coord", port):
            after = cli_json(asker, "status", signed["id"], "--coordinator", url)
            assert (after["id"], after["model"], after["digest"]) == (signed["id"], DEFAULT_MODEL, signed["digest"])
            again = httpx.get(f"{url}/v1/jobs/{anon.json()['id']}")
            assert again.status_code == 200 and again.json()["created_at"] == anon.json()["created_at"]
            listed = cli_json(asker, "list", "--coordinator", url)
            assert [j["id"] for j in listed["data"]] == [signed["id"]]  # the signer's; not the address's
            assert [j["id"] for j in httpx.get(url + "/v1/jobs").json()["data"]] == [anon.json()["id"]]
            waited = jobs_cli(asker, "result", signed["id"], "--wait", "--timeout", "1.5", "--coordinator", url)
            assert waited.returncode == 9 and "keeps running" in waited.stderr, waited.stderr
            cancelled = cli_json(asker, "cancel", signed["id"], "--coordinator", url)
            assert cancelled["state"] == "cancelled"
            shown = jobs_cli(asker, "result", signed["id"], "--coordinator", url)
            assert shown.returncode == 0 and "cancelled" in shown.stdout


def test_malformed_cli_input_is_refused_with_the_reason(tmp_path: Path) -> None:
    port, asker = free_port(), tmp_path / "asker"
    url = f"http://127.0.0.1:{port}"
    with coordinator_at(tmp_path / "coord", port):
        for args, says in [
            (["status", "NOT A JOB!", "--coordinator", url], "job_id"),
            (["submit", DEFAULT_MODEL, "hi", "--key", "short", "--coordinator", url], "key"),
            (["list", "--state", "bogus", "--coordinator", url], "state"),
            (["submit", "no-such-model", "hi", "--coordinator", url], "no-such-model"),
            (["status", "abcdef0123456789", "--coordinator", "ftp://nowhere"], "--coordinator"),
        ]:
            r = jobs_cli(asker, *args)
            assert r.returncode in (2, 3) and says in r.stderr, (args, r.returncode, r.stderr)
            assert "Traceback" not in r.stderr
