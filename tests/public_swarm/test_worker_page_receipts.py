"""The worker operator's page and the requester's receipts, on real processes (issue 11): a real
`hearth coordinator`, a real `hearth contribute` with the embedded model (--page-port), a signed
requester, and the real CLI `hearth credits receipts --verify` as a subprocess.

After one real job: the worker's page (HTTP on 127.0.0.1, and in headless Chromium) counts it —
jobs, tokens, credits — and never shows the prompt or the output; the coordinator's row no longer
holds the reply; `GET /v1/receipts` lists the job with the worker's key, and `--verify` passes.
Then the test plays a dishonest coordinator by editing its database (the only way to make the
real one lie): a receipt altered, the ledger taking more than the receipt's tokens × the price,
the job row counting more tokens; each makes `--verify` fail (exit 10) naming the job and what
is wrong; every row is put back and the ledger audits clean. A malformed `limit` is a 400."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, update

from hearth.identity import NodeIdentity
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.ledger.models import entries
from hearth.settings import DEFAULT_MODEL
from tests.conftest import HEARTH, REPO, free_port, hearth_env
from tests.public_swarm.coordinator_proc import coordinator
from tests.public_swarm.test_health_page import chromium
from tests.public_swarm.worker_proc import FIRST_LINK_S, contributor, live, wait_for

pytestmark = pytest.mark.slow
SECRET = "Tell me a secret about the lighthouse"


def receipts_cli(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEARTH, "credits", "receipts", "--url", url, *args], env=hearth_env(home, COLUMNS="200"),
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_the_workers_page_and_the_requesters_receipts_after_a_real_job(tmp_path: Path) -> None:
    asker_home = tmp_path / "asker"
    me = NodeIdentity.load_or_create(asker_home)
    page = free_port()
    with coordinator(tmp_path / "coord") as c, contributor(tmp_path / "w", c.url, "--page-port", str(page)):
        wait_for("worker linked", lambda: bool(live(c.url, me)), FIRST_LINK_S, tmp_path / "w" / "contribute.log")
        body = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": SECRET}], "max_tokens": 8}
        with httpx.Client(base_url=c.url, auth=SignedAuth(me), timeout=120) as client:
            r = client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            usage, answer = r.json()["usage"], r.json()["choices"][0]["message"]["content"]
            for bad in ("0", "101", "abc", "-1", "1.5"):
                refused = client.get(f"/v1/receipts?limit={bad}")
                assert refused.status_code == 400 and refused.json()["error"]["param"] == "query.limit", refused.text
        assert httpx.get(c.url + "/v1/receipts").status_code == 401  # signed only
        served = httpx.get(f"http://127.0.0.1:{page}/served.json", timeout=30).json()
        html = httpx.get(f"http://127.0.0.1:{page}/", timeout=30)
        dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                              f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"http://127.0.0.1:{page}/"],
                             capture_output=True, text=True, timeout=120).stdout
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://[::1]:{page}/", timeout=5)  # 127.0.0.1 only
        audit_receipts(c.db, asker_home, c.url, usage)
        with c.ledger() as ledger:
            assert ledger.audit() == []
    assert served["jobs"] == {"accepted": 1, "finished": 1, "failed": 0, "declined": 0}
    assert served["tokens"] == {"streamed": usage["completion_tokens"], "prompt": usage["prompt_tokens"]}
    assert served["credits"]["earned_recent"] == usage["cost_credits"] > 0  # the balance has its welcome too
    assert served["credits"]["balance"] == 10_000_000 + usage["cost_credits"]
    assert served["checks"] == {"scored_for_others": 0, "passed": None, "failed": None, "reported": "off",
                                "state": None, "reference": None}  # the test's coordinator runs without checks
    assert html.status_code == 200 and "script" not in html.headers["content-security-policy"]
    assert re.search(r'id="jobs-finished">1<', dom) and re.search(
        rf'id="tokens-streamed">{usage["completion_tokens"]}<', dom), dom[:2000]
    for shown in (json.dumps(served), html.text, dom):
        assert SECRET not in shown and "lighthouse" not in shown
        assert not answer.strip() or answer.strip() not in shown


def audit_receipts(db: str, home: Path, url: str, usage: dict[str, Any]) -> None:
    """--verify passes; then each lie of a dishonest coordinator (its database edited) fails it."""
    ok = receipts_cli(home, url, "--verify", "--json")
    assert ok.returncode == 0, ok.stderr + ok.stdout
    (listed,) = json.loads(ok.stdout)
    assert listed["verify"] == {"ok": True, "problems": [], "notes": []}, listed
    assert listed["cost"] == listed["charged"] == usage["cost_credits"] and listed["worker_key"]
    table = receipts_cli(home, url, "--verify")
    assert table.returncode == 0 and listed["job_id"] in table.stdout and "ok" in table.stdout
    job_id, hold_id = listed["job_id"], listed["hold_id"]
    engine = create_engine(db)
    with engine.begin() as conn:
        row = conn.execute(select(jobs.c.text, jobs.c.result).where(jobs.c.id == job_id)).one()
        release = conn.execute(select(entries.c.id, entries.c.amount).where(
            entries.c.hold_id == hold_id, entries.c.kind == "release")).one()
    assert row.text == ""  # the reply was sent: the coordinator forgot it
    result = json.loads(row.result)
    receipt = result["receipt"]
    n = usage["completion_tokens"]
    lies = [
        (jobs, jobs.c.id == job_id, {"result": json.dumps({**json.loads(row.result), "receipt": receipt.replace(
            f'"completion_tokens":{n}', f'"completion_tokens":{n + 1}')})}, {"result": row.result},
         "signature does not check"),
        (entries, entries.c.id == release.id, {"amount": release.amount - 1000}, {"amount": release.amount},
         "the ledger took"),
        (jobs, jobs.c.id == job_id, {"result": json.dumps({**result, "prompt_tokens": result["prompt_tokens"] + 3})},
         {"result": row.result}, "receipt's tokens"),  # the coordinator counts 3 more prompt tokens than signed
    ]
    assert f'"completion_tokens":{n}' in receipt
    for table_, where, lie, truth, said in lies:
        with engine.begin() as conn:
            assert conn.execute(update(table_).where(where).values(**lie)).rowcount == 1
        try:
            bad = receipts_cli(home, url, "--verify")
        finally:
            with engine.begin() as conn:
                conn.execute(update(table_).where(where).values(**truth))
        assert bad.returncode == 10, (said, bad.stdout + bad.stderr)
        assert f"job {job_id}" in bad.stderr and said in bad.stderr.replace("\n", " "), bad.stderr
    engine.dispose()
