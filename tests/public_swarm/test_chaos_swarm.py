"""The chaos run, short (scripts/chaos_swarm.py runs 200 jobs and many kills; docs/reliability.md):
a real coordinator and three real `hearth contribute` workers, 20 jobs (streamed and polled) from
signed requesters, one worker killed with SIGKILL mid-run and restarted. Nothing is lost, nothing
charged twice, the books balance, and the coordinator caps each worker's declared max_jobs. The
coordinator runs with spot-checks on (its default): the honest workers' checks never fail, and
their pay (in escrow while they are new) is in the balances the books add up.
About 30 s here (three model loads), so not marked slow."""

from __future__ import annotations

from pathlib import Path

from tests.public_swarm.chaos_kit import run_chaos


def test_jobs_survive_a_worker_killed_and_the_books_balance(tmp_path: Path, models_home: Path) -> None:
    out = run_chaos(tmp_path, models_home / "models", 20, every=(2.0, 3.0), down=(1.0, 2.0), max_kills=1,
                    declared_max_jobs=3, jobs_per_worker=2, concurrency=6, checks=True)
    assert out.kills == 1, out
    assert out.jobs == 20 and not out.stuck, out
    assert not out.closed_twice and not out.still_open and out.holds == 20, out
    assert out.audit == [] and out.grants == out.balances_and_holds, out
    assert out.published_max_jobs == {2}, out
    assert not out.client_errors, out
    assert not out.checks["failed"], out
    assert out.held
