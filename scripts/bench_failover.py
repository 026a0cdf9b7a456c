#!/usr/bin/env python3
"""How fast does a pooled stream notice a dead worker and go on? Needs root (namespaces).

Builds a household of 4 namespaces (scripts/lan.py), nodes in 3 of them capped so that SmolLM2 is
split 3 ways, `hearth serve --pool` in the first; then kills one worker (ggml RPC server) per round
at the 5th streamed token and measures: detection (kill -> the engine process is gone) and stall
(kill -> the next token reaches the client). Results go to docs/benchmarks.md.

    sudo .venv/bin/python scripts/bench_failover.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import lan  # noqa: E402
from benchdoc import write_section  # noqa: E402

from hearth.models.pull import resolve  # noqa: E402
from hearth.models.store import ModelStore  # noqa: E402

CLIENT = textwrap.dedent("""
    import httpx, json, os, signal, sys, threading, time
    base, marker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Write a long essay about Rome."}],
            "max_tokens": 40, "temperature": 0, "stream": True}

    def workers():
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
                env = open(f"/proc/{pid}/environ", "rb").read()
            except OSError:
                continue
            if b"hearth.ggml.server" in cmd and marker.encode() in env:
                out.append(int(pid))
        return sorted(out)

    results = []
    for r in range(rounds):
        engine = httpx.get(base + "/hearth/status").json()["engine_pid"]
        killed_at = gone_at = None
        stamps = []
        n = 0
        with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=120) as resp:
            for line in resp.iter_lines():
                if not line.startswith("data: {"):
                    continue
                d = json.loads(line[6:])
                if d.get("choices") and d["choices"][0]["delta"].get("content"):
                    n += 1
                    stamps.append(time.monotonic())
                    if n == 5:
                        engine = httpx.get(base + "/hearth/status").json()["engine_pid"]
                        victim = workers()[r % 3]
                        killed_at = time.monotonic()
                        os.kill(victim, signal.SIGKILL)
                        while True:
                            try:
                                os.kill(engine, 0)
                            except ProcessLookupError:
                                gone_at = time.monotonic()
                                break
                            time.sleep(0.005)
        after = [t for t in stamps if t >= killed_at]
        gaps = [b - a for a, b in zip([killed_at] + after, after)]
        results.append({"detect_s": gone_at - killed_at, "stall_s": max(gaps), "tokens": n})
    print(json.dumps(results))
""")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="hearth-bench-fo-"))
    resolve(ModelStore(tmp / "models"), "smollm2-135m")
    prefix = "hbf"
    py = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    try:
        machines = lan.up(4, prefix)

        def env(i: int) -> dict[str, str]:
            e = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
            e.update(HEARTH_HOME=str(tmp / f"home{i}"), HEARTH_N_CTX="2048", HEARTH_N_THREADS="1", HEARTH_LOG_LEVEL="info")
            return e

        (tmp / "home1").mkdir()
        (tmp / "home1" / "models").symlink_to(tmp / "models")
        for i in (2, 3, 4):
            procs.append(subprocess.Popen(["ip", "netns", "exec", machines[i - 1][0], py, "-m", "hearth.cli.main",
                                           "node", "--bind", machines[i - 1][1], "--max-memory", "45M"],
                                          env=env(i), stderr=subprocess.DEVNULL))
        time.sleep(4)
        procs.append(subprocess.Popen(["ip", "netns", "exec", machines[0][0], py, "-m", "hearth.cli.main", "serve",
                                       "--port", "11500", "--pool", "--max-memory", "50M"],
                                      env=env(1), stderr=(tmp / "serve.log").open("wb")))
        warm = "import httpx,time\nfor _ in range(300):\n    try:\n        httpx.post('http://127.0.0.1:11500/v1/completions', json={'prompt':'hi','max_tokens':1}, timeout=60).raise_for_status(); break\n    except Exception: time.sleep(0.2)"
        subprocess.run(["ip", "netns", "exec", machines[0][0], py, "-c", warm], check=True, env=env(1), timeout=120)
        out = subprocess.run(["ip", "netns", "exec", machines[0][0], py, "-c", CLIENT, "http://127.0.0.1:11500",
                              str(tmp), str(args.rounds)], capture_output=True, text=True, env=env(1), timeout=600)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        results = json.loads(out.stdout)
        print("\n".join(x for x in (tmp / "serve.log").read_text().splitlines() if "hearth." in x), file=sys.stderr)
    finally:
        lan.down(prefix)
        for p in procs:
            p.kill()
    detect = [r["detect_s"] * 1000 for r in results]
    stall = [r["stall_s"] * 1000 for r in results]
    section = "\n".join([
        "## Failover (`scripts/bench_failover.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: SmolLM2 split over 3 namespace nodes "
        f"and this machine; one worker (ggml RPC server) killed with SIGKILL at the 5th token, {len(results)} rounds.",
        "",
        "| | median | max |",
        "|---|---|---|",
        f"| detection: kill -> engine process gone | {statistics.median(detect):.0f} ms | {max(detect):.0f} ms |",
        f"| stall: longest gap between tokens after the kill (re-lease, reload, replay) | "
        f"{statistics.median(stall):.0f} ms "
        f"| {max(stall):.0f} ms |",
        "",
        "The stream then goes on; the namespace tests check that its text equals the no-fault run.",
    ])
    print(write_section(args.out, "bench_failover", section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
