"""The one base for hearth's HTTP clients of other machines: bounded reads, typed transport errors.

A client of another machine (the coordinator's, the requester's streams; the node control API's
may follow) must never read an answer without a bound nor let an httpx exception escape. This
base owns the httpx.AsyncClient and does both; a subclass says only what its errors are called
(`transport_error`, `too_large`), so the peer's name and the advice in a message stay its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Self

import httpx

from hearth.errors import HearthError


class BoundedHttpClient:
    """Owns one connection pool; close it (or `async with`). `transport` replaces the network
    (httpx.MockTransport or an ASGI transport in tests); `auth` signs every request."""

    max_answer: int = 1024 * 1024
    """Largest whole answer `exchange` reads; subclasses set their own."""

    def __init__(self, *, timeout: float, transport: httpx.AsyncBaseTransport | None = None,
                 auth: httpx.Auth | None = None) -> None:
        self.timeout = timeout
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, auth=auth)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- what a subclass names ---------------------------------------------------------------
    def transport_error(self, exc: httpx.RequestError, timeout: float) -> HearthError:
        """The error for a connection refused, timed out or broken."""
        return HearthError(f"The request failed ({exc or type(exc).__name__}).")

    def too_large(self, size: int, limit: int) -> HearthError:
        """The error for an answer over `limit` bytes (`size` is what was seen so far)."""
        return HearthError(f"The answer runs past {limit} bytes.")

    # -- transport ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def streaming(self, method: str, url: str, *, content: bytes | None = None,
                        headers: Mapping[str, str] | None = None,
                        timeout: float | httpx.Timeout | None = None) -> AsyncIterator[httpx.Response]:
        """The response with its body still unread; httpx errors while it is open (sending,
        reading the body) become `transport_error`."""
        wait = self.timeout if timeout is None else timeout
        shown = wait.read if isinstance(wait, httpx.Timeout) else wait
        try:
            async with self._http.stream(method, url, content=content, headers=headers, timeout=wait) as response:
                yield response
        except httpx.RequestError as exc:
            raise self.transport_error(exc, shown or 0.0) from exc

    async def exchange(self, method: str, url: str, *, content: bytes | None = None,
                       headers: Mapping[str, str] | None = None,
                       timeout: float | httpx.Timeout | None = None) -> tuple[httpx.Response, bytes]:
        """Send one request and read its whole answer, refused past `max_answer`."""
        async with self.streaming(method, url, content=content, headers=headers, timeout=timeout) as response:
            return response, await self.read(response, self.max_answer)

    async def read(self, response: httpx.Response, limit: int) -> bytes:
        """The body, refused past `limit` bytes without reading the rest."""
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise self.too_large(int(length), limit)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise self.too_large(size, limit)
            chunks.append(chunk)
        return b"".join(chunks)
