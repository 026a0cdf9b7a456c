"""Two coordinator processes on one database take jobs at once (issue 10: "two coordinator
processes on one PostgreSQL serve one swarm without giving a job to two workers"). 200 jobs are
queued; 2 separate processes (each its own engine and pool) × 4 threads, each thread a worker,
claim and finish until the queue is empty. Every job is claimed exactly once and is done on the
worker that claimed it. On PostgreSQL the claims use SKIP LOCKED; on SQLite BEGIN IMMEDIATE."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hearth.public_swarm.coordinator.job_rules import JobState
from hearth.public_swarm.coordinator.jobs import JobQueue
from tests.public_swarm.jobs_kit import digest, node

ROOT = Path(__file__).resolve().parents[2]
JOBS = 200
PROCESSES = 2
THREADS = 4


def test_two_processes_claim_every_job_exactly_once(ledger_url: str) -> None:
    with JobQueue.open(ledger_url) as q:
        queued = {q.submit(f"req{i % 7}", f"submit-{i:04d}", digest("ab"[i % 2]), {"prompt": f"p{i}"}, 8).id
                  for i in range(JOBS)}
    assert len(queued) == JOBS
    start_at = time.time() + 4.0  # both processes have imported and connected by then
    procs = [subprocess.Popen([sys.executable, "-m", "tests.public_swarm.jobs_claimer", ledger_url, str(tag),
                               str(THREADS), str(start_at)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for tag in range(PROCESSES)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    claims = [tuple(c) for out, _err in outs for c in json.loads(out.strip().splitlines()[-1])]
    per_job = Counter(job_id for job_id, _w in claims)
    assert set(per_job) == queued
    assert max(per_job.values()) == 1, [j for j, n in per_job.items() if n > 1][:5]
    per_process = [len(json.loads(out.strip().splitlines()[-1])) for out, _err in outs]
    print(f"claims per process: {per_process}; {JOBS / (time.time() - start_at):.0f} claim+finish/s (a lower bound: "
          "the wall time includes process exit)")
    with JobQueue.open(ledger_url) as q:
        for job_id, worker in claims:
            job = q.get(job_id)
            assert job is not None and job.state is JobState.DONE and job.worker_id == worker
        assert q.counts()[JobState.DONE] == JOBS


def test_requeue_from_several_coordinators_moves_each_job_once(ledger_url: str) -> None:
    """Every coordinator process runs `requeue_expired` on a timer: run it from 4 engines at once
    over 100 expired jobs; each job is requeued once (attempts 1), none is lost."""
    with JobQueue.open(ledger_url) as q:
        for i in range(100):
            q.submit("alice", f"submit-{i:04d}", digest("a"), {"n": i}, 8)
        while q.claim(node(1), [digest("a")], lease_s=1) is not None:
            pass
    queues = [JobQueue.open(ledger_url, pool_size=2) for _ in range(4)]
    try:
        later = time.time() + 60
        with ThreadPoolExecutor(4) as pool:
            moved = [j.id for batch in pool.map(lambda qq: qq.requeue_expired(later), queues) for j in batch]
        assert len(moved) == len(set(moved)) == 100
        assert all(job.attempts == 1 and job.state is JobState.QUEUED for job in queues[0].list_for("alice", limit=100))
    finally:
        for qq in queues:
            qq.close()


def test_the_same_submit_racing_makes_one_job(ledger_url: str) -> None:
    """A requester's retry can arrive at another coordinator while the first is in flight."""
    queues = [JobQueue.open(ledger_url, pool_size=2) for _ in range(6)]
    barrier = threading.Barrier(len(queues))
    ids: list[str] = []

    def submit(qq: JobQueue) -> None:
        barrier.wait()
        ids.append(qq.submit("alice", "submit-same", digest("a"), {"p": 1}, 8).id)

    try:
        threads = [threading.Thread(target=submit, args=(qq,)) for qq in queues]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(ids) == len(queues) and len(set(ids)) == 1
        assert queues[0].counts()[JobState.QUEUED] == 1
    finally:
        for qq in queues:
            qq.close()


KILLED = """
import os, signal, sys
from hearth.public_swarm.coordinator.jobs import JobQueue
from tests.public_swarm.jobs_kit import digest, node
q = JobQueue.open(sys.argv[1])
job = q.claim(node(7), [digest("a")], lease_s=1)
q.progress(job.id, node(7), "streamed before the kill", 4)
print(job.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_worker_process_loses_its_job_to_another_holder(ledger_url: str) -> None:
    """A process claims a job, streams part of it and is killed -9: after its lease the job goes
    back to the queue with the streamed part, and a worker of the same model (not of another) takes it."""
    with JobQueue.open(ledger_url) as q:
        q.submit("alice", "submit-kill", digest("a"), {"p": 1}, 8)
        proc = subprocess.run([sys.executable, "-c", KILLED, ledger_url], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == -9, proc.stderr[-2000:]
        job_id = proc.stdout.split()[0]
        assert q.claim(node(8), [digest("a")]) is None  # still leased to the dead worker
        deadline = time.time() + 10
        while not q.requeue_expired() and time.time() < deadline:
            time.sleep(0.2)
        assert q.claim(node(8), [digest("b")]) is None
        resumed = q.claim(node(9), [digest("a")])
        assert resumed is not None and resumed.id == job_id
        assert (resumed.text, resumed.tokens, resumed.attempts) == ("streamed before the kill", 4, 1)
