"""HOST:PORT parsing and formatting: what peers and people write must come back as the same endpoint,
and anything else must be refused with a message that names the text and the problem."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.net.endpoint import MAX_TEXT, Endpoint, join_host_port

ports = st.integers(1, 65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
label = st.from_regex(r"\A[A-Za-z0-9_]([A-Za-z0-9_-]{0,20}[A-Za-z0-9_])?\Z")
names = (st.lists(label, min_size=1, max_size=6).map(".".join)
         .filter(lambda n: not n.replace(".", "").isdigit()))
hosts = st.one_of(ipv4, ipv6, names)


@given(hosts, ports)
def test_format_then_parse_gives_the_same_endpoint(host: str, port: int) -> None:
    endpoint = Endpoint(host, port)
    assert Endpoint.parse(str(endpoint)) == endpoint
    assert Endpoint.parse(str(endpoint), default_port=1) == endpoint


@given(ipv6, ports)
def test_ipv6_is_written_in_brackets_and_kept_canonical(host: str, port: int) -> None:
    endpoint = Endpoint(host, port)
    written = str(endpoint)
    assert written.startswith("[") and written.endswith(f"]:{port}")
    assert ipaddress.IPv6Address(written[1:written.index("]")]) == ipaddress.IPv6Address(host)
    exploded = ipaddress.IPv6Address(host).exploded.upper()
    assert Endpoint.parse(f"[{exploded}]:{port}") == endpoint  # another spelling of one address


@given(st.one_of(ipv4, names), ports)
def test_ipv4_and_names_are_written_plainly(host: str, port: int) -> None:
    assert str(Endpoint(host, port)) == f"{host}:{port}"


@given(hosts, ports)
def test_a_host_alone_takes_the_default_port(host: str, port: int) -> None:
    written = f"[{host}]" if ":" in host else host
    assert Endpoint.parse(written, default_port=port) == Endpoint(host, port)
    if ":" in host:  # a bare IPv6 address, too, when nothing else can be its port
        assert Endpoint.parse(host, default_port=port) == Endpoint(host, port)


def test_examples() -> None:
    assert str(Endpoint("::1", 8080)) == "[::1]:8080"
    assert Endpoint.parse("[::1]:8080") == Endpoint("::1", 8080)
    assert Endpoint.parse("[::1]", default_port=11436) == Endpoint("::1", 11436)
    assert Endpoint.parse("192.168.1.20:11436").address == ipaddress.IPv4Address("192.168.1.20")
    assert Endpoint.parse("den.local:11437").address is None
    assert Endpoint.parse("[fe80::1%eth0]:51820") == Endpoint("fe80::1%eth0", 51820)
    assert str(Endpoint("fe80::1%eth0", 51820)) == "[fe80::1%eth0]:51820"
    # An IPv4 peer seen by a dual-stack socket is written the same on every Python version.
    assert str(Endpoint("::FFFF:192.0.2.7", 5000)) == "[::ffff:192.0.2.7]:5000"
    assert Endpoint.parse("[::ffff:c000:207]:5000") == Endpoint("::ffff:192.0.2.7", 5000)


def test_messages_write_even_a_bad_address_the_same_way() -> None:
    assert join_host_port("::1", 8080) == "[::1]:8080" == str(Endpoint("::1", 8080))
    assert join_host_port("den.local", 0) == "den.local:0"
    assert join_host_port("not an address", 70000) == "not an address:70000"  # for the error that says so


@pytest.mark.parametrize("text, problem", [
    ("", "it is empty"),
    ("den.local", "no port"),
    (":11436", "the host is empty"),
    ("[]:80", "only an IPv6 address goes in brackets"),
    ("[10.0.0.1]:80", "only an IPv6 address goes in brackets"),
    ("[den]:80", "only an IPv6 address goes in brackets"),
    ("[::1:80", "no closing ']'"),
    ("[::1]80", "after ']'"),
    ("[::1]]:80", "after ']'"),
    ("::1:8080", "in brackets"),
    ("fe80::1", "in brackets"),
    ("den:0", "port '0'"),
    ("den:65536", "port '65536'"),
    ("den:-1", "port '-1'"),
    ("den:", "port ''"),
    ("den:80x", "port '80x'"),
    ("den:²", "port '²'"),
    ("den:000080", "port '000080'"),
    ("den: 80", "port ' 80'"),
    ("den :80", "neither an IP address nor a host name"),
    (" den:80", "neither an IP address nor a host name"),
    ("d@n:80", "neither an IP address nor a host name"),
    ("den/x:80", "neither an IP address nor a host name"),
    ("bücher.de:80", "neither an IP address nor a host name"),
    ("den\n:80", "neither an IP address nor a host name"),
    ("-den:80", "neither an IP address nor a host name"),
    ("den..local:80", "neither an IP address nor a host name"),
    ("1.2.3.256:80", "not an IPv4 address"),
    ("01.2.3.4:80", "not an IPv4 address"),
    ("1.2.3:80", "not an IPv4 address"),
    ("[fe80::1%a]b]:80", "after ']'"),
    ("[fe80::1%a b]:80", "zone"),
    ("x" * 300 + ":80", f"longer than {MAX_TEXT} characters"),
    ("a" * 254 + ":80", "longer than 253 characters"),
    (("a" * 63 + ".") * 4 + ":80", "longer than 253 characters"),
    ("a" * 64 + ".local:80", "neither an IP address nor a host name"),
])
def test_malformed_endpoints_are_refused_with_a_clear_message(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as err:
        Endpoint.parse(text, default_port=None)
    message = str(err.value)
    assert "is not HOST:PORT" in message and problem in message, message
    assert repr(text[:64])[:-1] in message  # the text itself, shortened when long
    assert len(message) < 200


def test_a_concrete_address_refuses_the_wildcard_and_an_ip_refuses_names() -> None:
    for wildcard in ("0.0.0.0:5000", "[::]:5000"):
        assert Endpoint.parse(wildcard).is_wildcard
        with pytest.raises(ValueError, match="every address"):
            Endpoint.parse(wildcard, concrete=True)
    assert Endpoint.parse("den.local:5000", concrete=True).host == "den.local"
    with pytest.raises(ValueError, match="not a name"):
        Endpoint.parse("den.local:5000", ip=True)
    assert Endpoint.parse("[::1]:5000", ip=True, concrete=True) == Endpoint("::1", 5000)


def test_the_constructor_checks_too() -> None:
    assert Endpoint("127.0.0.1", 0).port == 0  # a listener's "any free port"
    for host, port in (("", 80), ("den", -1), ("den", 65536), ("a b", 80), ("::1:x", 80), ("fe80::1%]", 80)):
        with pytest.raises(ValueError):
            Endpoint(host, port)
    with pytest.raises(ValueError, match="not a number"):
        Endpoint("den", True)
    with pytest.raises(ValueError, match="port '0'"):
        Endpoint.parse("den:0")  # port 0 never comes from text


@given(st.text(max_size=80), st.none() | ports)
def test_any_text_parses_to_an_endpoint_that_formats_back_or_is_refused(text: str, default: int | None) -> None:
    try:
        endpoint = Endpoint.parse(text, default_port=default)
    except ValueError as exc:
        assert "is not HOST:PORT" in str(exc)
        return
    assert Endpoint.parse(str(endpoint)) == endpoint
    assert 0 < endpoint.port < 65536 and endpoint.host


@given(hosts, ports, st.sampled_from(" \t\n\x00/@#?,;\"'\\<>{}|`~!$&*()=é€"), st.data())
def test_junk_anywhere_is_refused(host: str, port: int, junk: str, data: st.DataObject) -> None:
    text = str(Endpoint(host, port))
    at = data.draw(st.integers(0, len(text)))
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        Endpoint.parse(text[:at] + junk + text[at:])
