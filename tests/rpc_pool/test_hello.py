from __future__ import annotations

import socket
import struct
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.ggml.hello import HELLO_RSP_SIZE, RpcUnreachable, RpcVersion, parse_hello_response, probe
from hearth.ggml.server import check_endpoint
from hearth.net.endpoint import Endpoint


def test_version_rules() -> None:
    me = RpcVersion(7, 0, 0)
    assert me.serves(RpcVersion(7, 0, 3))
    assert not me.serves(RpcVersion(7, 1, 0))  # a newer minor needs a newer client
    assert not me.serves(RpcVersion(6, 9, 0))
    assert RpcVersion.parse("7.0.0") == me and str(me) == "7.0.0"
    for bad in ("7.0", "7.0.0.0", "a.b.c", "", "7.-1.0", "1234.0.0"):
        with pytest.raises(ValueError):
            RpcVersion.parse(bad)


def test_parse_hello_response() -> None:
    data = struct.pack("<Q", HELLO_RSP_SIZE) + bytes([7, 1, 2, 0]) + bytes(24)
    assert parse_hello_response(data) == RpcVersion(7, 1, 2)
    with pytest.raises(ValueError):
        parse_hello_response(struct.pack("<Q", 5) + b"12345")


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_value_error(data: bytes) -> None:
    try:
        v = parse_hello_response(data)
    except ValueError:
        return
    assert 0 <= v.major < 256


def test_probe_refuses_something_that_is_not_an_rpc_server() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def answer_garbage() -> None:
        conn, _ = srv.accept()
        conn.recv(64)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    t = threading.Thread(target=answer_garbage)
    t.start()
    with pytest.raises(RpcUnreachable, match="did not answer the handshake"):
        probe("127.0.0.1", port)
    t.join(5)
    srv.close()
    with pytest.raises(RpcUnreachable):
        probe("127.0.0.1", port)  # nobody listens any more


@pytest.mark.parametrize("endpoint", ["0.0.0.0:5000", "[::]:5000", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999",
                                      "localhost:5000", "host:port", ":5000"])
def test_rpc_server_endpoints_must_be_specific(endpoint: str) -> None:
    with pytest.raises(ValueError):
        check_endpoint(endpoint)


def test_rpc_server_endpoint_ok() -> None:
    assert check_endpoint("127.0.0.1:50052") == Endpoint("127.0.0.1", 50052)
    assert check_endpoint("[::1]:50052") == Endpoint("::1", 50052)
