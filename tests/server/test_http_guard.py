"""What reaches a real `hearth serve` and a real `hearth node` before any route: forged Host
headers (DNS rebinding), forged X-Forwarded-For, slow and oversized request headers, and too many
connections from one address. Real processes and real sockets; nothing here is faked."""

from __future__ import annotations

import resource
import selectors
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from hearth.ggml.hello import probe
from tests.conftest import HEARTH, REPO, Server, free_port, hearth_env, stop_server, wait_answering

pytestmark = pytest.mark.slow
HEADER_TIMEOUT = 2.0
PARTIAL = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def _low_file_limit() -> None:
    """The server runs with 256 files, as where the issue was seen: 240 held sockets are most of it."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


@pytest.fixture(scope="module")
def guarded(models_home: Path) -> Iterator[Server]:
    port = free_port()
    log_path = models_home / f"serve-guard-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*HEARTH, "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                env=hearth_env(models_home, HEARTH_HEADER_TIMEOUT=str(HEADER_TIMEOUT)),
                                cwd=REPO, preexec_fn=_low_file_limit)
    srv = Server(f"http://127.0.0.1:{port}", proc, models_home)
    try:
        wait_answering(srv.url + "/", proc, log_path)
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("guard-node")
    port = free_port()
    with open(home / "node.log", "wb") as log:
        proc = subprocess.Popen([*HEARTH, "node", "--port", str(port), "--name", "guard", "--max-memory", "300M"],
                                env=hearth_env(home, HEARTH_HEADER_TIMEOUT=str(HEADER_TIMEOUT)),
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url + "/v1/node", proc, home / "node.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _slow_sockets(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(PARTIAL)
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed it (EOF or reset; a 408 may come first)."""
    try:
        while chunk := s.recv(65536):
            del chunk
        return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _wait_all_closed(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Wait until the server closes every socket or `timeout` passes; return the ones still open."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        if not _closed_by_server(s):
            sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(deadline - time.monotonic()):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if _closed_by_server(sock):
                sel.unregister(sock)
    still = [key.fileobj for key in sel.get_map().values()]
    sel.close()
    return [s for s in still if isinstance(s, socket.socket)]


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


# -- item 14: Host header ------------------------------------------------------------------------
def test_serve_refuses_a_forged_host_in_each_routes_error_shape(guarded: Server) -> None:
    port = _port(guarded.url)
    r = httpx.get(guarded.url + "/v1/models", headers={"Host": f"rebind.example:{port}"})
    assert r.status_code == 421
    error = r.json()["error"]
    assert error["code"] == "host_not_allowed" and "HEARTH_ALLOWED_HOSTS" in error["message"]
    r = httpx.post(guarded.url + "/api/chat", headers={"Host": "rebind.example"}, content=b'{"model": "x"}')
    assert r.status_code == 421 and isinstance(r.json()["error"], str)
    assert httpx.get(guarded.url + "/", headers={"Host": "127.0.0.2"}).status_code == 421
    two_hosts = _raw(port, f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil\r\n\r\n".encode())
    assert two_hosts.startswith(b"HTTP/1.1 421")
    for host in (f"127.0.0.1:{port}", "127.0.0.1", "localhost", f"LOCALHOST.:{port}", "localhost:1234"):
        assert httpx.get(guarded.url + "/v1/models", headers={"Host": host}).status_code == 200, host
    assert _raw(port, b"GET /api/version HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")  # no Host: no browser


def test_official_clients_still_work_with_the_host_check(guarded: Server) -> None:
    client = openai.OpenAI(base_url=guarded.base, api_key="unused-on-loopback", max_retries=0, timeout=120)
    r = client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=2, temperature=0)
    assert r.choices[0].message.content is not None
    local = openai.OpenAI(base_url=f"http://localhost:{_port(guarded.url)}/v1", api_key="x", max_retries=0)
    assert "smollm2-135m" in {m.id for m in local.models.list().data}
    assert httpx.get(guarded.url + "/api/tags").status_code == 200


def test_node_refuses_a_forged_host(node: str) -> None:
    r = httpx.get(node + "/v1/node", headers={"Host": f"rebind.example:{_port(node)}"})
    assert r.status_code == 421 and r.json()["error"]["code"] == "host_not_allowed"
    r = httpx.post(node + "/v1/leases", headers={"Host": "rebind.example"}, json={"bytes": 1_000_000})
    assert r.status_code == 421
    assert httpx.get(node + "/v1/node").json()["leases"] == []
    assert httpx.get(node + "/v1/node", headers={"Host": "localhost"}).status_code == 200


# -- item 5: X-Forwarded-For ---------------------------------------------------------------------
def test_forwarded_for_cannot_choose_the_lease_holder(node: str) -> None:
    forged = {"X-Forwarded-For": "10.9.9.9", "Forwarded": "for=10.9.9.9"}
    lease = httpx.post(node + "/v1/leases", json={"bytes": 1_000_000}, headers=forged).json()
    try:
        assert lease["holder"] == "127.0.0.1"
        shown = httpx.get(node + "/v1/node").json()["leases"]
        assert [x["holder"] for x in shown] == ["127.0.0.1"]
        host, port = lease["endpoint"].rsplit(":", 1)
        assert str(probe(host, int(port))) == "7.0.0"  # the relay admits the real peer
    finally:
        httpx.delete(f"{node}/v1/leases/{lease['lease_id']}")


# -- item 13: slow clients -----------------------------------------------------------------------
def test_partial_headers_neither_hold_the_server_nor_stay_open(guarded: Server) -> None:
    port = _port(guarded.url)
    started = time.monotonic()
    socks = _slow_sockets(port, 240)
    try:
        r = httpx.post(guarded.base + "/chat/completions", timeout=30,
                       json={"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}],
                             "max_tokens": 2})
        assert r.status_code == 200, r.text
        open_now = [s for s in socks if not _closed_by_server(_nonblocking(s))]
        assert len(open_now) <= 32, f"{len(open_now)} slow connections from one address still open"
        left = _wait_all_closed(socks, started + HEADER_TIMEOUT + 3 - time.monotonic())
        assert not left, f"{len(left)} connections still open {time.monotonic() - started:.1f} s after connecting"
    finally:
        for s in socks:
            s.close()


def _nonblocking(s: socket.socket) -> socket.socket:
    s.setblocking(False)
    return s


def test_a_kept_alive_connection_gets_the_same_header_deadline(guarded: Server) -> None:
    with socket.create_connection(("127.0.0.1", _port(guarded.url)), timeout=10) as s:
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b'"version"' not in first:  # the head and the body may come in separate reads
            first += s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        s.sendall(PARTIAL)
        t0 = time.monotonic()
        s.settimeout(HEADER_TIMEOUT + 3)
        reply = first.split(b"}", 1)[1]
        while chunk := s.recv(65536):
            reply += chunk
        assert time.monotonic() - t0 < HEADER_TIMEOUT + 1
        assert reply.startswith(b"HTTP/1.1 408")


def test_a_pipelined_partial_request_is_closed_after_the_first_is_answered(guarded: Server) -> None:
    with socket.create_connection(("127.0.0.1", _port(guarded.url)), timeout=HEADER_TIMEOUT + 3) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + PARTIAL)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in reply
        assert time.monotonic() - t0 < HEADER_TIMEOUT + 1


def test_oversized_headers_get_431(guarded: Server) -> None:
    with socket.create_connection(("127.0.0.1", _port(guarded.url)), timeout=10) as s:
        s.sendall(PARTIAL)
        try:
            for _ in range(64):  # 4 MiB of one header, never finished
                s.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    assert reply.startswith(b"HTTP/1.1 431") or reply == b""
    assert httpx.get(guarded.url + "/api/version").status_code == 200


def test_node_closes_slow_headers(node: str) -> None:
    socks = _slow_sockets(_port(node), 40)
    try:
        assert httpx.get(node + "/v1/node", timeout=10).status_code == 200
        assert not _wait_all_closed(socks, HEADER_TIMEOUT + 3)
    finally:
        for s in socks:
            s.close()
