"""A tiny real HTTP server on 127.0.0.1 that answers every path with the junk a test chose: what a
broken coordinator or something else on the worker page's port might send."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIG = 5 * 1024 * 1024


@dataclass
class Junk:
    """What every answer is: `mode` one of the keys of ANSWERS, or "slow" (nothing for 30 s)."""

    url: str
    port: int
    mode: str = "not_json"
    asked: list[str] = field(default_factory=list)


ANSWERS: dict[str, tuple[int, bytes, bool]] = {
    # mode: (status, body, send a Content-Length)
    "not_json": (200, b"<html>hello</html>", True),
    "wrong_types": (200, b'{"live_workers": "many", "jobs": [1], "balance": "x", "held": null, '
                         b'"credits": 5, "jobs_finished": -1}', True),
    "negative": (200, b'{"live_workers": -3, "jobs": {"queued": -1}, "credits": {"earned_recent": -5}}', True),
    "nested_deep": (200, b"[" * 100_000 + b"]" * 100_000, True),
    "huge_declared": (200, b"{" + b" " * BIG + b"}", True),
    "huge_undeclared": (200, b'{"live_workers": 1, "pad": "' + b"x" * BIG + b'"}', False),
    "server_error": (500, b'{"error": {"message": "boom", "code": "internal"}}', True),
}


@contextmanager
def junk_server() -> Iterator[Junk]:
    """Serve junk until the block ends."""
    junk = Junk(url="", port=0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            junk.asked.append(self.path)
            if junk.mode == "slow":
                time.sleep(30)
                return
            status, body, declared = ANSWERS[junk.mode]
            self.send_response(status)
            self.send_header("content-type", "application/json")
            if declared:
                self.send_header("content-length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading at its bound: what it should do

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    junk.port = server.server_address[1]
    junk.url = f"http://127.0.0.1:{junk.port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="junk-http")
    thread.start()
    try:
        yield junk
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
