#!/usr/bin/env python3
"""Chaos run of the public swarm (issue 11): jobs while workers are killed and restarted at random.

A real `hearth coordinator` and `--workers` real `hearth contribute` workers (the embedded
SmolLM2-135M, one thread each; each declares --max-jobs 3, the coordinator caps it with
--jobs-per-worker 2), `--jobs` jobs from signed requesters with granted credits (odd ones streamed
OpenAI chat requests, even ones `/v1/jobs` submissions polled to the end), while a random live
worker is sent SIGKILL (with its engine) every few seconds and restarted a few seconds later.
Checked at the end from the coordinator's database: 0 jobs lost (each done, or failed with an
error; none queued or running), 0 charged twice (one closing ledger operation per hold), the
ledger's audit empty and balances plus open holds equal to the grants. Written to
docs/reliability.md (its own section); exits 1 when something did not hold.

    .venv/bin/python scripts/chaos_swarm.py [--jobs 200] [--seed 11] [--every 2 6] [--down 1 5]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from benchdoc import write_section  # noqa: E402

from tests.public_swarm.chaos_kit import MODEL, Outcome, run_chaos  # noqa: E402


def report(out: Outcome, args: argparse.Namespace) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ok = "yes" if out.held else "**no**"
    lines = [
        f"## Chaos{' with spot-checks on' if args.checks else ''}: jobs while workers are killed "
        "(`scripts/chaos_swarm.py`)", "",
        f"Measured {when} on {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}.",
        f"Command: `.venv/bin/python scripts/chaos_swarm.py --jobs {args.jobs} --seed {args.seed} "
        f"--every {args.every[0]:g} {args.every[1]:g} --down {args.down[0]:g} {args.down[1]:g}"
        f"{' --checks' if args.checks else ''}`", "",
        f"What was tried: a real `hearth coordinator` (SQLite, link heartbeat 0.5 s, spot-checks "
        f"{'on: each honest worker new, so checked at 25 %' if args.checks else 'off'}) and {args.workers} real "
        f"`hearth contribute` workers ({MODEL}, 1 thread each, each declaring --max-jobs "
        f"{out.declared_max_jobs}, capped by --jobs-per-worker 2); {args.jobs} jobs of max_tokens 8 from 4 signed "
        "requesters (granted 1,000 credits each, each from its own loopback address), half streamed "
        "`/v1/chat/completions`, half `/v1/jobs` polled to the end, 8 at once. Every "
        f"{args.every[0]:g}-{args.every[1]:g} s a random live worker was sent SIGKILL (its process group: the "
        f"engine too) and restarted {args.down[0]:g}-{args.down[1]:g} s later.", "",
        "| what | figure |", "|---|---|",
        f"| run time | {out.seconds:.0f} s |",
        f"| workers killed (SIGKILL) / restarted | {out.kills} / {out.restarts} |",
        f"| jobs in the queue at the end | {out.jobs} ({dict(out.states)}) |",
        f"| jobs whose worker was lost under them (runs lost in all) | {out.jobs_with_lost_run} ({out.lost_runs}) |",
        f"| jobs that streamed from more than one worker (resumed mid-stream) | {out.moved} |",
        f"| jobs not final (lost or stuck) | {len(out.stuck)} |",
        f"| failed jobs' errors | {dict(out.errors) or 'none'} |",
        f"| client side: streams ended with [DONE] / polled jobs final | {out.streamed} / {out.polled} |",
        f"| submits retried (status, code) | {dict(out.retried_submits) or 'none'} |",
        f"| client errors | {dict(out.client_errors) or 'none'} |",
        f"| holds / closed more than once / still open | {out.holds} / {len(out.closed_twice)} / "
        f"{len(out.still_open)} |",
        f"| `Ledger.audit()` | {out.audit or 'empty'} |",
        f"| grants vs balances + open holds (micro-credits) | {out.grants} vs {out.balances_and_holds} |",
        f"| max_jobs the coordinator published per worker | {sorted(out.published_max_jobs)} |",
        *([f"| spot-checks by outcome (every worker honest: none may fail) | {dict(out.checks) or 'none'} |",
           f"| canaries by state | {dict(out.canaries) or 'none'} |"] if args.checks else []),
        "", f"Held: {ok}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--every", type=float, nargs=2, default=(2.0, 6.0), help="seconds between kills")
    parser.add_argument("--down", type=float, nargs=2, default=(1.0, 5.0), help="seconds a killed worker stays down")
    parser.add_argument("--checks", action="store_true", help="spot-checks on (the coordinator's default)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update docs/reliability.md")
    args = parser.parse_args()
    from hearth.models.pull import resolve
    from hearth.models.store import ModelStore

    with tempfile.TemporaryDirectory(prefix="hearth-chaos-") as tmp:
        work = Path(tmp)
        resolve(ModelStore(work / "models"), MODEL)
        out = run_chaos(work, work / "models", args.jobs, workers=args.workers, every=tuple(args.every),
                        down=tuple(args.down), seed=args.seed, checks=args.checks)
    text = report(out, args)
    print(text)
    if not args.no_write:
        write_section(REPO / "docs" / "reliability.md", "chaos_swarm_checks" if args.checks else "chaos_swarm", text)
    return 0 if out.held else 1


if __name__ == "__main__":
    sys.exit(main())
