"""`hearth dash`'s control routes on `hearth serve`: radius, price ceiling, which model is loaded.

    POST /hearth/control/radius     {"radius": "machine"|"household"|"trusted"|"public", "consent": false}
    POST /hearth/control/max-price  {"max_price": 5000}   (credits per million tokens; null: no ceiling)
    POST /hearth/control/load       {"model": "smollm2-135m"} -> NDJSON progress lines, then the result

Only from this machine (loopback), unless the server has an API key: then the key decides, as for
every route (ApiKeyMiddleware runs first). A load pulls a catalogued model the store lacks with
the functions `hearth pull` uses, then loads it into the engine; its progress goes to the caller
and, as `load_progress` events, to the server's feed. The load runs on when its caller leaves.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from hearth.errors import HearthError, InvalidRequest, ModelNotFound
from hearth.escalation.pool import Engines
from hearth.models.catalogue import lookup, validate_name
from hearth.models.pull import pull
from hearth.net.http_errors import error_body
from hearth.radius import parse_radius
from hearth.server.steering import Steerable, steerable
from hearth.settings import Settings

RADIUS_PATH = "/hearth/control/radius"
MAX_PRICE_PATH = "/hearth/control/max-price"
LOAD_PATH = "/hearth/control/load"
MAX_CEILING = 10**18
PROGRESS_EVERY_S = 0.25
Publish = Callable[..., object]
"""The feed's publish(kind, message, **data) (hearth.node_api.feed.Feed.publish)."""
Report = Callable[[float, int, int | None], None]
log = logging.getLogger("hearth.control")


class NotFromHere(HearthError):
    """A control request from another machine to a server without an API key."""

    http_status = 403
    error_type = "permission_error"
    code = "control_not_local"


class LoadUnderWay(HearthError):
    """Another model is being pulled or loaded; wait for it to finish."""

    http_status = 409
    error_type = "invalid_request_error"
    code = "load_under_way"


class LoadCancelled(HearthError):
    """The server stopped while a pull was under way (`hearth pull` resumes it)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RadiusChange(_Body):
    radius: str = Field(max_length=32)
    consent: StrictBool = False
    """With radius public: the person agreed that prompts may go to the coordinator (remembered)."""

    @field_validator("radius")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            return parse_radius(value, "radius").value
        except InvalidRequest as exc:
            raise ValueError(exc.message) from exc


class PriceChange(_Body):
    max_price: StrictInt | None

    @field_validator("max_price")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_CEILING:
            raise ValueError("max_price is whole credits per million tokens, 1 or more (null: no ceiling); "
                             "GET /v1/prices on the coordinator lists what models cost")
        return value


class LoadRequest(_Body):
    model: str = Field(min_length=1, max_length=256)


def only_local(settings: Settings) -> Callable[[Request], None]:
    """A dependency: with an API key every caller already showed it; without one, loopback only."""

    def check(request: Request) -> None:
        if settings.api_key is not None:
            return
        host = request.client.host if request.client else ""
        try:
            local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = False
        if not local:
            raise NotFromHere("Control requests come from this machine only, unless the server has an API "
                              "key: run `hearth dash` here, or start `hearth serve` with --api-key-file.")

    return check


def stored_or_catalogued(steer: Steerable, name: str) -> tuple[str, bool]:
    """The store name to load and whether it must be pulled first; ModelNotFound says what to do."""
    entry = lookup(name)
    try:
        stored_name = entry.alias if entry else validate_name(name.removesuffix(":latest"))
    except InvalidRequest as exc:
        raise ModelNotFound(f"No model is named {name!r}: `hearth models` lists the stored ones, "
                            "`hearth models --catalogue` what can be pulled.", param="model") from exc
    if steer.store.get(stored_name) is not None:
        return stored_name, False
    if entry is not None:
        return stored_name, True
    raise ModelNotFound(f"Model {name!r} is not in the store or the catalogue: pull it first (`hearth pull URL` "
                        "or a path), or choose one `hearth models --catalogue` lists.", param="model")


class Loader:
    """One load at a time: pull if needed, then load into the engine; progress to listeners and the feed."""

    def __init__(self, steer: Steerable, publish: Publish | None) -> None:
        self.steer, self.publish = steer, publish
        self.task: asyncio.Task[None] | None = None
        self.model: str | None = None
        self.listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self.stop = threading.Event()
        self._last = (0.0, "", -1.0)

    def start(self, name: str, needs_pull: bool) -> asyncio.Queue[dict[str, Any]]:
        """Start loading `name`; the queue (already listening) gets its progress lines."""
        if self.task is not None and not self.task.done():
            raise LoadUnderWay(f"{self.model} is being loaded; wait for it, then ask again.")
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.listeners.add(q)
        self.model = name
        self.task = asyncio.create_task(self._run(name, needs_pull), name=f"load {name}")
        self.steer.background.add(self.task)
        self.task.add_done_callback(self.steer.background.discard)
        return q

    def _emit(self, line: dict[str, Any], kind: str, message: str) -> None:
        for q in list(self.listeners):
            q.put_nowait(line)
        if self.publish is not None:
            data = {k: v for k, v in line.items() if isinstance(v, str | int | float | bool) or v is None}
            try:
                self.publish(kind, message, **data)
            except Exception:  # the feed must never break a load
                log.exception("publishing %s failed", kind)

    def _progress(self, loop: asyncio.AbstractEventLoop, name: str, phase: str) -> Report:
        def report(fraction: float, done: int = 0, total: int | None = None) -> None:
            if phase == "pull" and self.stop.is_set():
                raise LoadCancelled("The server is stopping; `hearth pull` resumes the download.")
            now = time.monotonic()
            last_t, last_phase, last_f = self._last
            if phase == last_phase and fraction < 1.0 and now - last_t < PROGRESS_EVERY_S and fraction - last_f < 0.1:
                return
            self._last = (now, phase, fraction)
            line = {"status": "progress", "model": name, "phase": phase, "fraction": round(fraction, 4),
                    "done": done, "total": total}
            verb = "pulling" if phase == "pull" else "loading"
            loop.call_soon_threadsafe(self._emit, line, "load_progress", f"{verb} {name}: {fraction:.0%}")

        return report

    async def _run(self, name: str, needs_pull: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            if needs_pull:
                step = self._progress(loop, name, "pull")
                await asyncio.to_thread(pull, self.steer.store, name,
                                        progress=lambda done, total: step(done / total if total else 0.0, done, total))
            loading = self._progress(loop, name, "load")
            await self.steer.load(name, lambda f: loading(f, 0, None))
            engine = self.steer.engine
            if engine is None or engine.config.model_name != name:
                raise HearthError(f"{name} was not loaded on this machine's circle; requests for it go to the "
                                  "public swarm.")
            self._emit({"status": "loaded", "model": name}, "model_loaded", f"{name} loaded")
        except HearthError as exc:
            self._emit({"status": "error", "model": name, **error_body(exc.message, exc.error_type, exc.code)},
                       "notice", f"loading {name} failed: {exc.message}"[:500])
        finally:
            for q in list(self.listeners):
                q.put_nowait({"status": "end"})

    async def follow(self, q: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[bytes]:
        """NDJSON lines of the load under way, until it ends (or the caller leaves: it runs on)."""
        try:
            while True:
                line = await q.get()
                if line.get("status") == "end":
                    return
                yield (json.dumps(line, ensure_ascii=False) + "\n").encode()
        finally:
            self.listeners.discard(q)


def add_routes(app: FastAPI, settings: Settings, pool: Engines, publish: Publish | None = None) -> Steerable:
    """Mount the control routes; returns the server's engines, now steerable (use them from here on)."""
    steer = steerable(pool, settings)
    loader = Loader(steer, publish)
    steer.on_close.append(loader.stop.set)
    local = Depends(only_local(settings))

    def changed(message: str, **data: object) -> None:
        if publish is not None:
            publish("settings_changed", message, **data)

    @app.post(RADIUS_PATH, dependencies=[local])
    async def radius(body: RadiusChange) -> dict[str, Any]:
        now = await steer.set_radius(body.radius, consent=body.consent)
        changed(f"radius is now {now}", radius=now.value)
        return {"radius": now.value, "public": steer.public, "coordinator": steer.coordinator or None}

    @app.post(MAX_PRICE_PATH, dependencies=[local])
    async def max_price(body: PriceChange) -> dict[str, Any]:
        steer.set_max_price(body.max_price)
        shown = "no ceiling" if body.max_price is None else f"{body.max_price:,} credits per million tokens"
        changed(f"price ceiling is now {shown}", max_price=body.max_price)
        return {"max_price": body.max_price}

    @app.post(LOAD_PATH, dependencies=[local])
    async def load(body: LoadRequest) -> StreamingResponse:
        name, needs_pull = await asyncio.to_thread(stored_or_catalogued, steer, body.model.strip())
        lines = loader.follow(loader.start(name, needs_pull))
        return StreamingResponse(_with_first(name, needs_pull, lines), media_type="application/x-ndjson")

    return steer


async def _with_first(name: str, needs_pull: bool, lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    first = {"status": "started", "model": name, "pull": needs_pull}
    yield (json.dumps(first) + "\n").encode()
    async for line in lines:
        yield line
