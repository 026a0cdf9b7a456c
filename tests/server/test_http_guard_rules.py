"""The decisions behind the HTTP guard, without sockets: which Host headers a listener accepts,
and which connection gives way when a client or the server reaches its connection cap."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.net.http_guard import HostRule, PeerTable, host_name, parse_allowed_hosts
from hearth.net.webserve import web_server
from hearth.settings import Settings


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:11435", "127.0.0.1"), ("LocalHost.", "localhost"), ("[::1]:80", "::1"), ("[::1]", "::1"),
    ("den.local:11436", "den.local"), ("::1", "::1"), (" example.com ", "example.com"),
])
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_loopback_listener_answers_only_to_its_address_and_localhost() -> None:
    rule = HostRule.for_bind("127.0.0.1", machine_names=["den"])
    for ok in ("127.0.0.1", "127.0.0.1:9", "localhost:11435", "localhost.", None):
        assert rule.allows(ok), ok
    for bad in ("rebind.example", "den", "127.0.0.2", "[::1]", "", "0.0.0.0", "localhost.rebind.example"):
        assert not rule.allows(bad), bad


def test_lan_listener_also_answers_to_this_machines_names_and_configured_ones() -> None:
    rule = HostRule.for_bind("192.168.1.20", ["hearth.home"], ["den"])
    for ok in ("192.168.1.20:11436", "den", "den:11436", "hearth.home"):
        assert rule.allows(ok), ok
    for bad in ("localhost", "192.168.1.21", "rebind.example"):
        assert not rule.allows(bad), bad
    assert HostRule.for_bind("::1").allows("[::1]:11435")
    assert HostRule.for_bind("0.0.0.0").allows("10.1.2.3:11435")
    assert not HostRule.for_bind("0.0.0.0").allows("rebind.example")
    assert HostRule.for_bind("127.0.0.1", parse_allowed_hosts("a.example, *")).allows("anything")


@given(st.text(max_size=40))
def test_no_host_but_the_listeners_own_gets_through(header: str) -> None:
    allowed = HostRule.for_bind("127.0.0.1").allows(header)
    assert allowed == (host_name(header) in ("127.0.0.1", "localhost"))


@dataclass(eq=False)
class Conn:
    waiting_for_headers: bool = True


def test_a_client_at_its_cap_evicts_its_oldest_waiting_connection() -> None:
    table = PeerTable(per_client=2, total=10)
    a, b, c = Conn(waiting_for_headers=False), Conn(), Conn()
    assert table.admit(a, "10.0.0.1") == (True, [])
    assert table.admit(b, "10.0.0.1") == (True, [])
    assert table.admit(c, "10.0.0.1") == (True, [b])  # a is busy with a request: b gives way
    assert table.count("10.0.0.1") == 2
    c.waiting_for_headers = False
    assert table.admit(Conn(), "10.0.0.1") == (False, [])  # all busy: the newcomer is refused
    assert table.admit(Conn(), "10.0.0.2")[0]  # another address is not affected
    table.release(a)
    table.release(a)
    assert table.count("10.0.0.1") == 1 and len(table) == 2


def test_the_global_cap_evicts_anyones_oldest_waiting_connection() -> None:
    table = PeerTable(per_client=5, total=2)
    busy, idle = Conn(waiting_for_headers=False), Conn()
    table.admit(busy, "10.0.0.1")
    table.admit(idle, "10.0.0.2")
    assert table.admit(Conn(), "10.0.0.3") == (True, [idle])
    assert table.count("10.0.0.2") == 0 and len(table) == 2


def test_uvicorn_runs_without_proxy_headers() -> None:
    server = web_server(lambda *a: None, Settings(), "127.0.0.1")  # type: ignore[arg-type]
    assert server.config.proxy_headers is False
