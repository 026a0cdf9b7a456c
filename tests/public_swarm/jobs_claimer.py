"""One claiming process for test_jobs_concurrency: `python -m tests.public_swarm.jobs_claimer URL
TAG THREADS START_AT`. Opens its own engine, waits until START_AT (wall clock) so that both
processes start together, then THREADS threads (each its own worker id) claim and finish jobs
until the queue is empty, and prints one JSON line: [[job_id, worker_id], ...]."""

from __future__ import annotations

import json
import sys
import threading
import time

from hearth.public_swarm.coordinator.jobs import JobQueue
from tests.public_swarm.jobs_kit import digest, node


def main() -> None:
    url, tag, threads, start_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    q = JobQueue.open(url, pool_size=threads)
    models = [digest("a"), digest("b")]
    got: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        worker = node(1000 * tag + n)
        try:
            while True:
                job = q.claim(worker, models, lease_s=600)
                if job is None:
                    return
                with lock:
                    got.append((job.id, worker))
                q.finish(job.id, worker, "ok", 1)
        except BaseException as exc:
            errors.append(exc)

    time.sleep(max(0.0, start_at - time.time()))
    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    q.close()
    if errors:
        raise errors[0]
    print(json.dumps(got))


if __name__ == "__main__":
    main()
