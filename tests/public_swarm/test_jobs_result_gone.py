"""A job's result is returned once (retention, issue 11): fetched again, or expired unfetched, the
coordinator says so (`result.gone`) and `hearth jobs result` says it in words and exits 11 rather
than print an empty text; `hearth jobs status` says it too. Neither `status` (a peek) nor the
list delivers the text: only `result` does.

The coordinator is the real app over a real database (SQLite and PostgreSQL) reached through
httpx's ASGI transport; the CLI runs in this process (`hearth_here`), its `with_jobs` pointed at
that app instead of a socket, and the job is finished by the queue as a worker's Finished would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator import jobs_client
from hearth.public_swarm.coordinator.jobs_client import ResultGone, job_submit
from hearth.public_swarm.coordinator.retention_rules import Policy
from tests.cli.inprocess import hearth_here
from tests.public_swarm.dispatch_kit import MODEL
from tests.public_swarm.jobs_http_kit import Books, books
from tests.public_swarm.jobs_kit import node

W = node(7)
ANSWER = "a very private answer"


@pytest.fixture
def coordinator(ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Books, Path]]:
    home = tmp_path / "me"
    me = NodeIdentity.load_or_create(home)
    with books(ledger_url) as b:
        def here(_settings: Any, _url: str | None, action: Callable[[Any], Awaitable[Any]]) -> Any:
            async def go() -> Any:
                async with b.signed(me) as jobs:
                    return await action(jobs)
            return asyncio.run(go())

        monkeypatch.setattr(jobs_client, "with_jobs", here)
        yield b, home


def done_job(b: Books, home: Path) -> str:
    async def go() -> str:
        async with b.signed(NodeIdentity.load_or_create(home)) as mine:
            return (await mine.submit(job_submit(MODEL.name, "a question", max_tokens=8))).id

    job_id = asyncio.run(go())
    assert b.queue.claim(W, [MODEL.digest]) is not None
    b.queue.finish(job_id, W, ANSWER, 3, [1, 2, 3], {"finish_reason": "stop", "prompt_tokens": 9, "finisher": W})
    return job_id


def test_a_second_fetch_says_the_result_was_fetched_and_exits_non_zero(coordinator: tuple[Books, Path]) -> None:
    b, home = coordinator
    job_id = done_job(b, home)
    first = hearth_here(home, "jobs", "result", job_id)
    assert first.code == 0 and ANSWER in first.stdout, first
    again = hearth_here(home, "jobs", "result", job_id)
    assert again.code == ResultGone.exit_code == 11, again
    assert "fetched already" in " ".join(again.stderr.split()) and ANSWER not in again.stdout, again
    status = hearth_here(home, "jobs", "status", job_id)
    assert status.code == 0 and "done" in status.stdout and "fetched already" in " ".join(status.stdout.split())
    shown = hearth_here(home, "jobs", "status", job_id, "--json")
    assert '"gone": "fetched"' in shown.stdout and '"text": ""' in shown.stdout, shown


def test_a_result_nobody_fetched_within_the_ttl_is_said_to_have_expired(coordinator: tuple[Books, Path]) -> None:
    b, home = coordinator
    job_id = done_job(b, home)
    b.dispatcher.retention.policy = Policy(grace_s=0, ttl_s=0)
    assert b.dispatcher.retention.sweep(now=b.queue.clock() + 1) >= 1  # the TTL walk forgets the text
    r = hearth_here(home, "jobs", "result", job_id)
    assert r.code == 11 and "expired" in r.stderr and ANSWER not in r.stdout, r


def test_status_and_the_list_never_deliver_the_text(coordinator: tuple[Books, Path]) -> None:
    """`hearth jobs status` peeks (GET /v1/jobs/{id}?peek=true) and the list carries no text: neither
    uses up the result, which `hearth jobs result` then still fetches (once)."""
    b, home = coordinator
    job_id = done_job(b, home)
    status = hearth_here(home, "jobs", "status", job_id)
    assert status.code == 0 and "done" in status.stdout and ANSWER not in status.stdout, status
    assert f"hearth jobs result {job_id}" in " ".join(status.stdout.split()), status
    for _ in range(2):
        listed = hearth_here(home, "jobs", "list", "--json")
        assert listed.code == 0 and job_id in listed.stdout and ANSWER not in listed.stdout, listed
        assert '"gone": "withheld"' in listed.stdout, listed
    first = hearth_here(home, "jobs", "result", job_id)
    assert first.code == 0 and ANSWER in first.stdout, first
    listed = hearth_here(home, "jobs", "list", "--json")
    assert '"gone": "fetched"' in listed.stdout and ANSWER not in listed.stdout, listed


def test_a_result_not_yet_fetched_is_shown_with_nothing_gone(coordinator: tuple[Books, Path]) -> None:
    b, home = coordinator
    job_id = done_job(b, home)
    r = hearth_here(home, "jobs", "result", job_id, "--json")
    assert r.code == 0 and '"gone": null' in r.stdout and ANSWER in r.stdout, r
