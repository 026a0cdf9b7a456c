"""One ggml RPC server in its own process: `python -m hearth.ggml.server --endpoint H:P`.

One process per lease, since a server serves one client at a time and llama.cpp's server can
be crashed by malformed frames (FIELD-NOTES.md): a crash takes down only this lease.
With --watch-stdin it exits when its stdin reaches EOF: the node holds the other end of that
pipe, so the server ends with the node however the node ends (kill -9 too).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from hearth.net.endpoint import Endpoint


def check_endpoint(endpoint: str) -> Endpoint:
    """IP:PORT with a specific address: the wildcard is refused (never expose the server)."""
    return Endpoint.parse(endpoint, ip=True, concrete=True)


def exit_at_stdin_eof() -> threading.Thread:
    """Exit as soon as stdin ends: the parent closed it, or died. The parent never writes to it."""

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        finally:
            os._exit(0)  # the serving thread is blocked in C; nothing else needs a clean exit

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hearth-rpc-server")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF (parent gone)")
    args = ap.parse_args(argv)
    try:
        check_endpoint(args.endpoint)
    except ValueError as exc:
        print(f"hearth-rpc-server: {exc}", file=sys.stderr)
        return 2
    if args.watch_stdin:
        exit_at_stdin_eof()
    from hearth.ggml.native import start_server

    start_server(args.endpoint, args.cache_dir, args.threads)
    return 1  # start_server returns only when it could not serve


if __name__ == "__main__":
    sys.exit(main())
