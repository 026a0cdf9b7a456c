"""The client of `hearth serve`'s control routes (hearth/server/control_routes.py; the paths are
repeated here because tui and server do not import each other, and a test checks they agree).

Every failure is a HearthError: DashUnreachable when nothing answers, ControlRefused with the
server's own message (what to do next) when it says no, DashAnswerInvalid for anything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from hearth.errors import HearthError
from hearth.net.http_client import BoundedHttpClient
from hearth.tui.client import DashAnswerInvalid, DashUnreachable

RADIUS_PATH = "/hearth/control/radius"
MAX_PRICE_PATH = "/hearth/control/max-price"
LOAD_PATH = "/hearth/control/load"
MAX_ANSWER = 64 * 1024
MAX_LINE = 4096
LOAD_TIMEOUT = httpx.Timeout(10.0, read=600.0)
"""A load's answer is a line at least per progress step; a pull of a large model may pause."""


class ControlRefused(HearthError):
    """The server refused the change; its message says why and what to do."""

    code = "control_refused"

    def __init__(self, message: str, *, status: int, remote_code: str | None) -> None:
        super().__init__(message)
        self.status, self.remote_code = status, remote_code


@dataclass(frozen=True)
class LoadProgress:
    model: str
    phase: str
    """'pull' (into the store) or 'load' (into the engine)."""
    fraction: float


def _refusal(status: int, body: bytes) -> HearthError:
    try:
        error = json.loads(body)["error"]
        message, code = str(error["message"])[:2000], error.get("code")
    except (ValueError, KeyError, TypeError):
        return DashAnswerInvalid(f"The server answered HTTP {status} without hearth's error body: is that URL a "
                                  "`hearth serve` of this version?")
    return ControlRefused(message, status=status, remote_code=code if isinstance(code, str) else None)


class ControlClient(BoundedHttpClient):
    """`async with ControlClient(url, api_key=...) as c: await c.radius("machine")`."""

    max_answer = MAX_ANSWER

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(timeout=timeout, transport=transport)
        self.url = url.rstrip("/")
        self.headers = {"content-type": "application/json"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"

    def transport_error(self, exc: httpx.RequestError, timeout: float) -> HearthError:
        if isinstance(exc, httpx.ConnectError):
            return DashUnreachable(f"Nothing answers at {self.url}: start `hearth serve` (or give hearth dash "
                                    "--url).")
        return DashUnreachable(f"The connection to {self.url} failed ({exc or type(exc).__name__}); try again.")

    def too_large(self, size: int, limit: int) -> HearthError:
        return DashAnswerInvalid(f"The answer from {self.url} runs past {limit} bytes: is that a `hearth serve`?")

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response, answer = await self.exchange("POST", self.url + path, content=json.dumps(body).encode(),
                                               headers=self.headers)
        if response.status_code != 200:
            raise _refusal(response.status_code, answer)
        try:
            parsed = json.loads(answer)
        except ValueError as exc:
            raise DashAnswerInvalid(f"The answer to {path} is not JSON.") from exc
        if not isinstance(parsed, dict):
            raise DashAnswerInvalid(f"The answer to {path} is not a JSON object.")
        return parsed

    async def radius(self, radius: str, *, consent: bool = False) -> str:
        """Set the server's radius; the radius it now has."""
        answer = await self._post(RADIUS_PATH, {"radius": radius, "consent": consent})
        now = answer.get("radius")
        if not isinstance(now, str) or len(now) > 32:
            raise DashAnswerInvalid(f"The answer to {RADIUS_PATH} names no radius: is that a `hearth serve` of "
                                     "this version?")
        return now

    async def max_price(self, ceiling: int | None) -> int | None:
        answer = await self._post(MAX_PRICE_PATH, {"max_price": ceiling})
        value = answer.get("max_price")
        return value if isinstance(value, int) else None

    async def load(self, model: str, on_progress: Callable[[LoadProgress], None] | None = None) -> str:
        """Pull (if needed) and load `model`; its progress to `on_progress`; the loaded name."""
        body = json.dumps({"model": model}).encode()
        async with self.streaming("POST", self.url + LOAD_PATH, content=body, headers=self.headers,
                                  timeout=LOAD_TIMEOUT) as response:
            if response.status_code != 200:
                raise _refusal(response.status_code, await self.read(response, MAX_ANSWER))
            async for text in response.aiter_lines():
                if len(text) > MAX_LINE:
                    raise DashAnswerInvalid(f"A line of the load's answer runs past {MAX_LINE} characters.")
                line = _line(text)
                status = line.get("status")
                if status == "progress" and on_progress is not None:
                    fraction = line.get("fraction")
                    on_progress(LoadProgress(str(line.get("model", model)), str(line.get("phase", "")),
                                             float(fraction) if isinstance(fraction, int | float) else 0.0))
                elif status == "loaded":
                    return str(line.get("model", model))
                elif status == "error":
                    found = line.get("error")
                    error: dict[str, Any] = found if isinstance(found, dict) else {}
                    raise ControlRefused(str(error.get("message", "The load failed."))[:2000], status=200,
                                         remote_code=error.get("code"))
        raise DashUnreachable(f"The server stopped answering before {model} was loaded; see its log.")


def _line(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise DashAnswerInvalid("A line of the load's answer is not JSON: is that URL a `hearth serve`?") from exc
    if not isinstance(parsed, dict):
        raise DashAnswerInvalid("A line of the load's answer is not a JSON object.")
    return parsed
