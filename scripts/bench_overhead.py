#!/usr/bin/env python3
"""What do hearth's engine process and HTTP layer cost? Streamed decode tokens/s and
time-to-first-token through `hearth serve` against llama-cpp-python in-process: same model,
threads, context and prompts, runs interleaved, medians and ratios written to docs/benchmarks.md.

    .venv/bin/python scripts/bench_overhead.py [--runs 9] [--tokens 128] [--threads 2 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from benchdoc import write_section  # noqa: E402

MODEL = "smollm2-135m"


@dataclass
class Run:
    ttft_ms: float
    tokens: int
    decode_tps: float


@dataclass
class Result:
    threads: int
    direct: list[Run]
    hearth: list[Run]
    server_cpu_ms_per_token: float
    client: str

    @property
    def ratio(self) -> float:
        hearth = statistics.median(r.decode_tps for r in self.hearth)
        return hearth / statistics.median(r.decode_tps for r in self.direct)

    @property
    def added_ttft_ms(self) -> float:
        return statistics.median(h.ttft_ms - d.ttft_ms for h, d in zip(self.hearth, self.direct, strict=True))


def measure(stream: Iterator[str | None], t0: float) -> Run:
    """Count content chunks; time from the request to the first, and from the first to the last."""
    first = last = None
    n = 0
    for text in stream:
        if not text:
            continue
        last = time.perf_counter()
        first = first or last
        n += 1
    if first is None or last is None or n < 2:
        raise RuntimeError("no tokens were streamed")
    return Run((first - t0) * 1000, n, (n - 1) / (last - first))


def direct_stream(llm: Any, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str | None]:
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0, stream=True):
        yield chunk["choices"][0]["delta"].get("content")


def hearth_stream(client: Any, messages: list[dict[str, str]], max_tokens: int) -> Iterator[str | None]:
    if isinstance(client, httpx.Client):
        body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    choices = json.loads(line[6:])["choices"]
                    if choices:
                        yield choices[0]["delta"].get("content")
        return
    for chunk in client.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens,
                                                temperature=0, stream=True):
        if chunk.choices:
            yield chunk.choices[0].delta.content


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench(threads: int, args: argparse.Namespace, home: Path, model_path: Path) -> Result:
    import llama_cpp
    import openai

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env.update(HEARTH_HOME=str(home), HEARTH_N_THREADS=str(threads), HEARTH_N_CTX=str(args.n_ctx))
    server = subprocess.Popen([sys.executable, "-m", "hearth.cli.main", "serve", "--port", str(port),
                               "--model", MODEL], env=env, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(url + "/hearth/status").json().get("engine_pid"):
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        client: Any = (openai.OpenAI(base_url=url + "/v1", api_key="local", max_retries=0)
                       if args.client == "openai" else httpx.Client(base_url=url, timeout=120))
        llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=args.n_ctx, n_threads=threads, flash_attn=True,
                              n_threads_batch=threads, verbose=False)
        warm = [{"role": "user", "content": "Warm up."}]
        measure(direct_stream(llm, warm, 8), time.perf_counter())
        measure(hearth_stream(client, warm, 8), time.perf_counter())
        direct: list[Run] = []
        through: list[Run] = []
        server_cpu = 0.0
        for i in range(args.runs):
            # A new prompt each run, the same on both sides, so each run evaluates its prompt.
            messages = [{"role": "user", "content": f"Write a long essay about the history of Rome, part {i + 1}."}]
            sides = ["direct", "hearth"] if i % 2 == 0 else ["hearth", "direct"]
            for side in sides:
                t0 = time.perf_counter()
                if side == "direct":
                    direct.append(measure(direct_stream(llm, messages, args.tokens), t0))
                else:
                    c0 = cpu_seconds(server.pid)
                    through.append(measure(hearth_stream(client, messages, args.tokens), t0))
                    server_cpu += cpu_seconds(server.pid) - c0
        llm.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
    per_token = server_cpu / sum(r.tokens for r in through) * 1000
    return Result(threads, direct, through, per_token, args.client)


def render(results: list[Result], args: argparse.Namespace) -> str:
    import llama_cpp

    med = statistics.median
    rows = []
    for r in results:
        rows.append(
            f"| {r.threads} | {med(x.decode_tps for x in r.direct):.1f} | {med(x.decode_tps for x in r.hearth):.1f} "
            f"| **{r.ratio:.3f}** ({'meets' if r.ratio >= 0.98 else 'misses'} >= 0.98) "
            f"| {med(x.ttft_ms for x in r.direct):.1f} | {med(x.ttft_ms for x in r.hearth):.1f} "
            f"| **{r.added_ttft_ms:+.1f}** ({'meets' if r.added_ttft_ms <= 10 else 'misses'} <= 10) "
            f"| {r.server_cpu_ms_per_token:.2f} |"
        )
    runs = "\n".join(
        f"- {r.threads} thread(s), tokens/s direct/hearth: "
        + ", ".join(f"{d.decode_tps:.1f}/{h.decode_tps:.1f}" for d, h in zip(r.direct, r.hearth, strict=True))
        for r in results
    )
    return f"""## hearth serve vs llama-cpp-python in-process (`scripts/bench_overhead.py`)

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} cores,
Python {platform.python_version()}, llama-cpp-python {llama_cpp.__version__}. SmolLM2-135M-Instruct Q4_1, n_ctx
{args.n_ctx}, greedy, {args.tokens} tokens per run, {args.runs} runs per side, interleaved (the side that goes
first alternates). Through hearth: `{results[0].client}` client, SSE from `hearth serve` on loopback, engine in
its child process. In-process: `Llama.create_chat_completion(stream=True)` with the same threads. Tokens/s counts
streamed chunks from the first to the last; time to first token (TTFT) runs from sending the request; the
added TTFT is the median of paired differences. Server CPU is the `hearth serve` process's own CPU time
(not the engine's) per streamed token.

| threads | direct tok/s | hearth tok/s | ratio | direct TTFT ms | hearth TTFT ms | added TTFT ms | server CPU ms/token |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{runs}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--client", choices=["openai", "httpx"], default="openai",
                    help="openai: the official client; httpx: a minimal SSE reader")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = ap.parse_args()

    from hearth.models.pull import resolve
    from hearth.models.store import ModelStore

    home = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    _, model_path = resolve(ModelStore(home / "models"), MODEL)
    results = [bench(t, args, home, model_path) for t in args.threads]
    print(write_section(args.out, "bench_overhead", render(results, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
