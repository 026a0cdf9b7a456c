"""Who a request comes from, for the engine's fair share of slots (server/streaming.client_of):
the peer's address, and a hash of the API key it sent, never the key itself."""

from __future__ import annotations

from fastapi import Request


def request(host: str | None, authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization is not None else []
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers,
             "client": (host, 50000) if host is not None else None}
    return Request(scope)


def test_a_client_is_its_address_and_its_keys_hash() -> None:
    from hearth.server.streaming import client_of

    assert client_of(request("192.0.2.7")) == "192.0.2.7"
    assert client_of(request(None)) == "unknown"
    keyed = client_of(request("192.0.2.7", "Bearer sekrit-key"))
    assert keyed.endswith("@192.0.2.7") and "sekrit" not in keyed and len(keyed.split("@")[0]) == 16
    assert client_of(request("192.0.2.7", "bearer  sekrit-key ")) == keyed  # as the key check reads it
    assert client_of(request("192.0.2.7", "Bearer other-key")) != keyed
    assert client_of(request("192.0.2.8", "Bearer sekrit-key")) != keyed
    assert client_of(request("192.0.2.7", "Basic abc")) == "192.0.2.7"
