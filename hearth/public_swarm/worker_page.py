"""The worker operator's own page (issue 11): what this machine served the public swarm.

`hearth contribute` counts, in its own process, the frames its link sends (`Served.record`):
offers accepted and declined, jobs finished and failed, tokens streamed, prompt tokens read,
spot-checks it scored for the coordinator. Counts only: no prompt, no output, no job id is kept.
It serves them on 127.0.0.1 only (`--page-port`, default DEFAULT_WORKER_PAGE_PORT; 0: no page) as
a small HTML page and its JSON twin (`/served.json`), with the credits the coordinator's ledger
shows for this worker and its standing there (`GET /v1/standing`: spot-checks of its output passed
and failed, credits in escrow, vested and forfeited), both asked, signed as the worker, at most
every EARNINGS_S. A coordinator that does not answer the standing (an older one, or this worker
never linked to it) leaves the page saying "not reported" rather than guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import HearthError
from hearth.public_swarm.coordinator.wire import Credits, StandingView
from hearth.public_swarm.protocol.messages import Accept, Checked, Decline, Failed, Finished, Message, Tokens
from hearth.settings import Settings

LOOPBACK = "127.0.0.1"
PAGE = "/"
JSON = "/served.json"
EARNINGS_S = 15.0
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@dataclass
class Served:
    """Counts of what this worker sent; never the contents."""

    started: float = field(default_factory=time.time)
    accepted: int = 0
    declined: int = 0
    finished: int = 0
    failed: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    checks: int = 0
    """Spot-checks of other workers' output this machine scored."""

    def record(self, message: Message) -> None:
        """Count one frame this worker's link sent."""
        match message:
            case Accept():
                self.accepted += 1
            case Decline():
                self.declined += 1
            case Tokens():
                self.tokens += len(message.token_ids)
            case Finished():
                self.finished += 1
                self.prompt_tokens += message.prompt_tokens
            case Failed():
                self.failed += 1
            case Checked():
                self.checks += 1
            case _:
                pass


Ask = Callable[[], Awaitable[Credits]]
AskStanding = Callable[[], Awaitable[StandingView]]


class Earnings:
    """This worker's credits on the coordinator's ledger and its standing there (spot-checks,
    escrow), asked at most every EARNINGS_S."""

    def __init__(self, ask: Ask | None, *, standing: AskStanding | None = None, every_s: float = EARNINGS_S) -> None:
        self.ask, self.ask_standing, self.every_s = ask, standing, every_s
        self.at = float("-inf")
        self.view: dict[str, Any] = {"balance": None, "earned_recent": None, "error": "not asked yet",
                                     "standing": None}

    async def latest(self) -> dict[str, Any]:
        if self.ask is not None and time.monotonic() - self.at >= self.every_s:
            self.at = time.monotonic()
            try:
                credits = await asyncio.wait_for(self.ask(), 10)
            except (HearthError, TimeoutError) as exc:
                self.view = {**self.view, "error": getattr(exc, "message", None) or "the coordinator did not answer"}
            else:
                earned = sum(e.amount for e in credits.entries if e.kind == "settle" and e.amount > 0)
                self.view = {**self.view, "balance": credits.balance, "earned_recent": earned, "error": None}
            self.view["standing"] = await self._standing()
        return self.view

    async def _standing(self) -> dict[str, Any] | None:
        """The standing's counts, or None when the coordinator does not tell (older, or unknown here)."""
        if self.ask_standing is None:
            return None
        try:
            return (await asyncio.wait_for(self.ask_standing(), 10)).model_dump()
        except (HearthError, TimeoutError):
            return None


def snapshot(served: Served, credits: dict[str, Any], node_id: str) -> dict[str, Any]:
    """The JSON twin: counts and credits, no contents. Checks passed/failed and escrow are null
    when the coordinator did not report them (and when it runs without spot-checks)."""
    ledger = {k: v for k, v in credits.items() if k != "standing"}
    told = credits.get("standing") or {}
    on = bool(told.get("spot_checks"))
    return {"node_id": node_id, "since": served.started, "jobs": {
        "accepted": served.accepted, "finished": served.finished, "failed": served.failed,
        "declined": served.declined}, "tokens": {"streamed": served.tokens, "prompt": served.prompt_tokens},
        "checks": {"scored_for_others": served.checks, "passed": told.get("verified") if on else None,
                   "failed": told.get("failed") if on else None,
                   "reported": "on" if on else ("off" if told else None),
                   "state": told.get("state") if on else None, "reference": told.get("reference") if on else None},
        "credits": {**ledger, **{k: told.get(k) if on else None for k in ("escrowed", "vested", "forfeited")}}}


def _checks_line(checks: dict[str, Any]) -> str:
    if checks["reported"] == "off":
        return "none: this coordinator runs without spot-checks"
    if checks["reported"] != "on":
        return "not reported by the coordinator"
    if checks["reference"]:
        return "none: a reference worker of the operator"
    return f"{checks['passed']} passed, {checks['failed']} failed ({checks['state']})"


def _micro(amount: object) -> str:
    return "unknown" if not isinstance(amount, int) else f"{amount / 1_000_000:,.6f}".rstrip("0").rstrip(".")


def render(view: dict[str, Any]) -> str:
    """The page: every value escaped, no script, refreshed by the browser every 10 s."""
    jobs, tokens, checks, credits = view["jobs"], view["tokens"], view["checks"], view["credits"]
    rows = [("Jobs finished", jobs["finished"]), ("Jobs accepted", jobs["accepted"]), ("Jobs failed", jobs["failed"]),
            ("Offers declined", jobs["declined"]), ("Tokens streamed", tokens["streamed"]),
            ("Prompt tokens read", tokens["prompt"]), ("Spot-checks scored for others", checks["scored_for_others"]),
            ("Spot-checks of this machine", _checks_line(checks)),
            ("Credits (balance)", _micro(credits.get("balance"))),
            ("Credits earned (recent entries)", _micro(credits.get("earned_recent")))]
    if checks["reported"] == "on":
        rows += [("Credits in escrow", _micro(credits.get("escrowed"))),
                 ("Credits vested", _micro(credits.get("vested"))),
                 ("Credits forfeited", _micro(credits.get("forfeited")))]
    body = "".join(f'<tr><th>{html.escape(k)}</th><td id="{html.escape(_slug(k))}">{html.escape(str(v))}</td></tr>'
                   for k, v in rows)
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(view["since"]))
    error = credits.get("error")
    note = f"<p>The coordinator could not be asked: {html.escape(str(error))}</p>" if error else ""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"refresh\" content=\"10\">"
            "<title>hearth contribute: what this machine served</title><style>body{font-family:sans-serif;"
            "margin:2em}th{text-align:left;padding-right:2em}td{text-align:right}</style></head><body>"
            f"<h1>What this machine served</h1><p>Worker {html.escape(view['node_id'])}, since {since}. "
            "Counts only: this page never shows a prompt or an output.</p>"
            f"<table>{body}</table>{note}<p><a href=\"{JSON}\">JSON</a></p></body></html>")


def _slug(text: str) -> str:
    return "-".join(w for w in "".join(c.lower() if c.isalnum() else " " for c in text).split())


def page_app(served: Served, earnings: Earnings, node_id: str) -> Any:
    """The page's ASGI app (GET / and GET /served.json)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

    @app.get(PAGE)
    async def page() -> HTMLResponse:
        return HTMLResponse(render(snapshot(served, await earnings.latest(), node_id)), headers=headers)

    @app.get(JSON)
    async def counts() -> JSONResponse:
        return JSONResponse(snapshot(served, await earnings.latest(), node_id), headers=headers)

    return app


async def serve_page(settings: Settings, app: Any, port: int, say: Callable[[str], None]) -> None:
    """Serve the page on 127.0.0.1:`port` until cancelled (never another address: it is the
    operator's own). A port already taken (another contributor here) is said, and contributing goes on."""
    from hearth.net.pump import listening_socket
    from hearth.net.webserve import web_server

    try:
        sock = listening_socket(LOOPBACK, port)
    except OSError as exc:
        say(f"no page of what this machine served: {LOOPBACK}:{port} is taken ({exc.strerror or exc}); "
            "choose another with --page-port")
        return
    server = web_server(app, settings, LOOPBACK)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # contribute handles signals
    say(f"what this machine serves (counts only): http://{LOOPBACK}:{port}/")
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(serving)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(serving, 5)
        sock.close()
