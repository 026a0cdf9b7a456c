#!/usr/bin/env python3
"""A bounded soak on loopback: a real `hearth serve` (embedded model, temporary HEARTH_HOME) and a
real `hearth node`, hit concurrently by valid, invalid, abandoned and slow requests on the OpenAI,
Ollama and node routes. Writes what was sent and what came back to docs/reliability.md: responses
by status and error code, server RSS at start and end, how long the engine stayed busy after the
last client left, and whether a normal request and a lease still work at the end.

    .venv/bin/python scripts/soak.py [--minutes 3] [--workers 6] [--out docs/reliability.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from soak_report import HEADER_TIMEOUT, render

from hearth.errors import HearthError
from hearth.net.endpoint import Endpoint
from hearth.node_api import wire
from hearth.node_api.client import NodeClient

REPO = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8}
LONG_CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Count from one to a thousand."}],
             "max_tokens": 400, "temperature": 0}
OLLAMA = {"model": MODEL, "messages": [{"role": "user", "content": "Name a fruit."}], "stream": False,
          "options": {"num_predict": 8}}


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    slow_closed_after: list[float] = field(default_factory=list)
    slow_left_open: int = 0

    def response(self, kind: str, r: httpx.Response, expect: Container[int]) -> None:
        self.statuses[str(r.status_code)] += 1
        code = error_code(r)
        if code:
            self.codes[code] += 1
        if r.status_code not in expect:
            self.unexpected[f"{kind}: {r.status_code} {code or ''}".strip()] += 1

    def failure(self, kind: str, exc: BaseException) -> None:
        self.statuses[type(exc).__name__] += 1
        self.unexpected[f"{kind}: {type(exc).__name__}"] += 1


def error_code(r: httpx.Response) -> str | None:
    if r.status_code < 400:
        return None
    with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
        err = r.json()["error"]
        return str(err.get("code")) if isinstance(err, dict) else "ollama_error"
    return "not_json"


OK = (200, 429)  # 429: the queue is full, which is an answer, not a failure
CLIENT_ERROR = range(400, 500)


def rss_kib(pid: int | None) -> int:
    """Resident memory from /proc (0 when the process is gone)."""
    with contextlib.suppress(OSError, TypeError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Soak:
    def __init__(self, serve: str, node: str, tally: Tally, deadline: float, seed: int) -> None:
        self.serve, self.node, self.tally, self.deadline = serve, node, tally, deadline
        self.rng = random.Random(seed)
        self.http = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64))

    async def send(self, kind: str, expect: Container[int], method: str, url: str, **kw: Any) -> None:
        self.tally.sent[kind] += 1
        try:
            r = await self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.tally.failure(kind, exc)
            return
        self.tally.response(kind, r, expect)

    async def valid(self) -> None:
        kind, path, body = self.rng.choice([
            ("valid: openai chat", "/v1/chat/completions", CHAT),
            ("valid: openai completion", "/v1/completions", {"model": MODEL, "prompt": "Once upon", "max_tokens": 8}),
            ("valid: openai embeddings", "/v1/embeddings", {"model": MODEL, "input": ["a house", "a warm hearth"]}),
            ("valid: ollama chat", "/api/chat", OLLAMA),
            ("valid: ollama generate (no Content-Type)", "/api/generate",
             {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 4}}),
        ])
        typed = {} if "no Content-Type" in kind else {"content-type": "application/json"}
        await self.send(kind, OK, "POST", self.serve + path, content=json.dumps(body).encode(), headers=typed)

    async def listings(self) -> None:
        path = self.rng.choice(["/v1/models", "/api/tags", "/api/version", "/hearth/status", "/"])
        await self.send("valid: listing", (200,), "GET", self.serve + path)

    async def invalid(self) -> None:
        path = self.rng.choice(["/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate"])
        kind, body, headers = self.rng.choice([
            ("invalid: malformed JSON", b'{"model": "smollm2-135m", "messages": [', {}),
            ("invalid: wrong types", b'{"model": 5, "messages": "hi", "max_tokens": "many", "prompt": []}', {}),
            ("invalid: lone surrogate", b'{"model": "smollm2-135m", "prompt": "\\ud800", '
                                        b'"messages": [{"role": "user", "content": "\\ud800"}]}', {}),
            ("invalid: huge body (24 MB)", b'{"model": "smollm2-135m", "prompt": "' + b"a" * 24_000_000 + b'"}', {}),
            ("invalid: not JSON at all", b"\xff\xfe garbage", {"content-type": "text/plain"}),
        ])
        await self.send(kind, CLIENT_ERROR, "POST", self.serve + path, content=body, headers=headers)

    async def bad_host(self) -> None:
        url = self.rng.choice([f"{self.serve}/v1/models", f"{self.serve}/api/tags", self.node + wire.STATUS])
        await self.send("invalid: forged Host (DNS rebinding)", (400, 421), "GET", url,
                        headers={"Host": "rebind.example"})

    async def stream(self, abandon: bool) -> None:
        """A streamed request read to its end, or abandoned (the client closes after 2 lines)."""
        kind = "abandoned: stream closed after 2 lines" if abandon else "valid: openai chat streamed"
        self.tally.sent[kind] += 1
        path, body = self.rng.choice([("/v1/chat/completions", LONG_CHAT | {"stream": True}), ("/api/generate", {
            "model": MODEL, "prompt": "Count to 500.", "options": {"num_predict": 400}})]) if abandon else (
            "/v1/chat/completions", CHAT | {"stream": True})
        try:
            async with self.http.stream("POST", self.serve + path, json=body) as r:
                lines = []
                async for line in r.aiter_lines():
                    lines.append(line)
                    if abandon and len(lines) >= 2:
                        break
            self.tally.response(kind, r, OK)
            if not abandon and r.status_code == 200 and "data: [DONE]" not in lines:
                self.tally.unexpected[f"{kind}: stream ended without [DONE]"] += 1
        except httpx.HTTPError as exc:
            self.tally.failure(kind, exc)

    async def abandon_request(self) -> None:
        kind = "abandoned: non-streaming request dropped after 0.5 s"
        self.tally.sent[kind] += 1
        path, body = self.rng.choice([("/v1/chat/completions", LONG_CHAT),
                                      ("/api/chat", OLLAMA | {"options": {"num_predict": 400}})])
        async with httpx.AsyncClient(timeout=0.5) as quick:
            try:
                r = await quick.post(self.serve + path, json=body)
                self.tally.response(kind, r, OK)
            except httpx.TimeoutException:
                self.tally.statuses["dropped by the client"] += 1
            except httpx.HTTPError as exc:
                self.tally.failure(kind, exc)

    async def slow_headers(self) -> None:
        """A burst of connections that never finish their headers; how long until each is closed."""
        kind = "slow: partial headers (burst of 40)"
        self.tally.sent[kind] += 40
        at = Endpoint.parse(self.rng.choice([self.serve, self.node]).removeprefix("http://"))

        async def one() -> None:
            reader, writer = await asyncio.open_connection(at.host, at.port)
            t0 = time.monotonic()
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            try:
                while time.monotonic() - t0 < HEADER_TIMEOUT * 4:
                    with contextlib.suppress(asyncio.TimeoutError):
                        if not await asyncio.wait_for(reader.read(65536), 1.0):
                            self.tally.slow_closed_after.append(time.monotonic() - t0)
                            return
                    writer.write(b"a")  # one byte a second, forever
                self.tally.slow_left_open += 1
            except (ConnectionResetError, BrokenPipeError):
                self.tally.slow_closed_after.append(time.monotonic() - t0)
            finally:
                writer.close()

        results = await asyncio.gather(*(one() for _ in range(40)), return_exceptions=True)
        for exc in results:
            if isinstance(exc, BaseException):
                self.tally.failure(kind, exc)

    async def lease(self) -> None:
        """Raw, not hearth.node_api's client: forged headers, and every status is tallied."""
        forged = self.rng.random() < 0.3
        kind = "node: lease" + (" with forged X-Forwarded-For" if forged else "")
        self.tally.sent[kind] += 1
        headers = {"X-Forwarded-For": "10.9.9.9"} if forged else {}
        try:
            r = await self.http.post(self.node + wire.LEASES, json={"bytes": 1_000_000}, headers=headers)
            self.tally.response(kind, r, (201, 409))
            if r.status_code != 201:
                return
            lease = r.json()
            if lease.get("holder") != "127.0.0.1":
                self.tally.unexpected[f"{kind}: holder {lease.get('holder')}"] += 1
            if self.rng.random() < 0.5:  # release it; otherwise abandon it and let it expire
                await self.http.delete(self.node + wire.lease_path(lease["lease_id"]))
            else:
                self.tally.sent["node: lease abandoned (no heartbeat)"] += 1
        except httpx.HTTPError as exc:
            self.tally.failure(kind, exc)

    async def worker(self) -> None:
        actions: list[tuple[Callable[[], Awaitable[None]], int]] = [
            (self.valid, 17), (lambda: self.stream(False), 6), (self.listings, 4), (self.invalid, 8),
            (self.bad_host, 3), (lambda: self.stream(True), 4), (self.abandon_request, 4),
            (self.slow_headers, 1), (self.lease, 3)]
        funcs, weights = zip(*actions, strict=True)
        while time.monotonic() < self.deadline:
            await self.rng.choices(funcs, weights)[0]()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "hearth.cli.main", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPO)


def wait_for(url: str, proc: subprocess.Popen[bytes], check: Callable[[httpx.Response], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if check(httpx.get(url, timeout=2)):
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up (exit {proc.poll()})")


def idle_after(serve: str, limit: float) -> float | None:
    """Seconds until the engine is neither busy nor has waiters (None: still busy after `limit`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        with contextlib.suppress(httpx.HTTPError):
            status = httpx.get(serve + "/hearth/status", timeout=10).json()
            if not status.get("busy") and not status.get("waiting"):
                return time.monotonic() - t0
        time.sleep(0.2)
    return None


def after_soak(serve: str, node: str) -> dict[str, Any]:
    """Does a normal request still work, is a lease still granted, do abandoned leases expire?"""
    facts: dict[str, Any] = {"final": "failed", "final_lease": "failed", "leases_drained": None}
    with contextlib.suppress(httpx.HTTPError):
        r = httpx.post(serve + "/v1/chat/completions", json=CHAT, timeout=120)
        facts["final"] = f"{r.status_code}" + (" (succeeded)" if r.status_code == 200 else f" {r.text[:200]}")
    asyncio.run(lease_after_soak(node, facts))
    return facts


async def lease_after_soak(url: str, facts: dict[str, Any]) -> None:
    """Do abandoned leases drain within 40 s, and is a new lease then granted?"""
    node, t0 = Endpoint.parse(url.removeprefix("http://")), time.monotonic()
    async with NodeClient(timeout=10) as nodes:
        try:
            while (await nodes.status(node)).detail.leases and time.monotonic() - t0 < 40:
                await asyncio.sleep(0.5)
            if not (await nodes.status(node)).detail.leases:
                facts["leases_drained"] = time.monotonic() - t0
            granted = await nodes.lease(node, 1_000_000, timeout=30)
            facts["final_lease"] = "201 (granted)"
            await nodes.release(node, granted.lease_id, timeout=30)
        except HearthError as exc:
            facts["final_lease"] += f" ({exc.code}: {exc.message})"


def with_sections(text: str, path: Path) -> str:
    """The soak's text, followed by the other scripts' marked sections already in `path` (the chaos
    runs' `<!-- name:begin -->` blocks), which a soak must not drop."""
    old = path.read_text() if path.exists() else ""
    first = re.search(r"<!-- [\w-]+:begin -->", old)
    return text.rstrip("\n") + "\n" + ("\n" + old[first.start():] if first else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "reliability.md")
    args = ap.parse_args()

    from hearth.models.pull import resolve
    from hearth.models.store import ModelStore

    home = Path(tempfile.mkdtemp(prefix="hearth-soak-"))
    resolve(ModelStore(home / "models"), MODEL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env.update(HEARTH_HOME=str(home), HEARTH_N_CTX="2048", HEARTH_HEADER_TIMEOUT=str(HEADER_TIMEOUT))
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        sport, nport = a.getsockname()[1], b.getsockname()[1]
    serve, node = f"http://127.0.0.1:{sport}", f"http://127.0.0.1:{nport}"
    procs = [start(["serve", "--port", str(sport), "--model", MODEL], env, home / "serve.log"),
             start(["node", "--port", str(nport), "--name", "soak", "--max-memory", "400M"],
                   env | {"HEARTH_HOME": str(home / "node")}, home / "node.log")]
    try:
        wait_for(serve + "/hearth/status", procs[0], lambda r: bool(r.json().get("engine_pid")), 180)
        wait_for(node + wire.STATUS, procs[1], lambda r: r.status_code == 200, 60)
        engine_pid = int(httpx.get(serve + "/hearth/status").json()["engine_pid"])
        httpx.post(serve + "/v1/chat/completions", json=CHAT, timeout=60).raise_for_status()
        facts: dict[str, Any] = {"command": " ".join(["scripts/soak.py", *sys.argv[1:]]),
                                 "rss_start": rss_kib(procs[0].pid), "engine_rss_start": rss_kib(engine_pid),
                                 "node_rss_start": rss_kib(procs[1].pid)}
        tally = Tally()

        async def run() -> None:
            soaks = [Soak(serve, node, tally, time.monotonic() + args.minutes * 60, args.seed + i)
                     for i in range(args.workers)]
            try:
                await asyncio.gather(*(s.worker() for s in soaks))
            finally:
                for s in soaks:
                    await s.http.aclose()

        print(f"soaking {serve} and {node} for {args.minutes:g} min (logs in {home})", file=sys.stderr)
        asyncio.run(run())
        facts["idle_after"] = idle_after(serve, 300)
        facts |= after_soak(serve, node)
        facts["rss_end"], facts["node_rss_end"] = rss_kib(procs[0].pid), rss_kib(procs[1].pid)
        facts["engine_rss_end"] = rss_kib(engine_pid)
        with contextlib.suppress(httpx.HTTPError):  # a restarted engine has a new pid
            facts["engine_rss_end"] = rss_kib(httpx.get(serve + "/hearth/status", timeout=10).json()["engine_pid"])
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            proc.kill()
            proc.wait()
    text = render(args, tally, facts)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(with_sections(text, args.out))
    print(text)
    if tally.unexpected:
        print(f"logs kept in {home}", file=sys.stderr)
    else:
        shutil.rmtree(home, ignore_errors=True)
    return 1 if tally.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
