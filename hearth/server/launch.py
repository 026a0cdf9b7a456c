"""`hearth serve` without the terminal: the exposure checks, the listening socket, the server's life."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from hearth import __version__
from hearth.errors import HearthError, InsecureBind, InvalidRequest
from hearth.escalation.pool import Engines
from hearth.net.bind import is_loopback
from hearth.net.endpoint import Endpoint, join_host_port
from hearth.net.pump import listening_socket
from hearth.net.webserve import loop_factory, stop_cleanly_on_sigterm, web_server
from hearth.server.app import create_app
from hearth.settings import Settings

KEY_FILE_READ_MAX = 4096


def read_key_file(path: Path) -> tuple[str, bool]:
    """The key (the file's first line, surrounding whitespace stripped), and whether other users
    can read the file."""
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read(KEY_FILE_READ_MAX)
    except OSError as exc:
        raise InvalidRequest(f"--api-key-file {path}: cannot read it ({exc.strerror or exc}).") from exc
    try:
        key = raw.decode("utf-8").splitlines()[0].strip() if raw.strip() else ""
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"--api-key-file {path}: the key must be UTF-8 text.") from exc
    return key, bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def check_exposure(settings: Settings) -> None:
    """Beyond loopback, a key is required: anyone on the network could use this machine."""
    if not is_loopback(settings.host) and settings.api_key is None:
        raise InsecureBind(
            f"Refusing to serve on {settings.host} without an API key: anyone on the network could "
            "use this machine. Pass --api-key-file (or set HEARTH_API_KEY), or bind to 127.0.0.1."
        )
    if settings.api_key is not None and not settings.api_key.get_secret_value().strip():
        raise InvalidRequest("The API key is empty; choose a non-empty key.")


def serve(settings: Settings, pool: Engines, model: str | None, say: Callable[[str], None],
          status: Callable[[str], AbstractContextManager[Any]]) -> None:
    """Serve until SIGINT or SIGTERM on `pool` (the engine pool, or its escalating wrapper with
    --radius public); `model`, when given, is loaded before the first request."""
    from hearth.ggml.native import check_rpc_backend

    check_exposure(settings)
    check_rpc_backend()
    server = web_server(create_app(settings, pool), settings, settings.host)
    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        where = join_host_port(settings.host, settings.port)
        raise HearthError(f"Cannot listen on {where}: {exc.strerror or exc}. Is another `hearth serve` "
                          "running? Stop it or choose another --port.") from exc
    port = sock.getsockname()[1]

    async def main() -> None:
        if model:
            with status(f"Loading {model}…"):
                await pool.load(model)
        url = f"http://{Endpoint(settings.host, port)}"
        say(f"hearth {__version__} serving on {url} (OpenAI base URL {url}/v1)")
        await server.serve(sockets=[sock])

    stop_cleanly_on_sigterm("hearth serve")
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main())


