"""Which address `hearth pair` uses when no route says (an isolated LAN). The netlink reading
and the real thing in a namespace are tested in tests/cli/test_pair_cli.py."""

from __future__ import annotations

import pytest

from hearth.pairing.addresses import (
    IFF_LOOPBACK,
    IFF_RUNNING,
    IFF_UP,
    InterfaceAddress,
    NoLanAddress,
    interface_addresses,
    pick_lan_address,
    route_source,
)

UP = IFF_UP | IFF_RUNNING
LO = InterfaceAddress("lo", "127.0.0.1", UP | IFF_LOOPBACK)


def test_the_one_lan_address_is_chosen() -> None:
    found = [LO, InterfaceAddress("eth0", "192.168.1.20", UP), InterfaceAddress("hearth0", "10.99.3.4", UP),
             InterfaceAddress("eth1", "10.0.0.5", IFF_UP), InterfaceAddress("eth2", "10.1.0.5", 0)]
    assert pick_lan_address(found) == "192.168.1.20"  # not loopback, the tunnel, or links down or cableless
    assert pick_lan_address([LO, InterfaceAddress("eth0", "169.254.7.7", UP)]) == "169.254.7.7"
    assert pick_lan_address([InterfaceAddress("eth0", "169.254.7.7", UP),
                             InterfaceAddress("eth1", "10.0.0.5", UP)]) == "10.0.0.5"


def test_none_or_several_lan_addresses_are_refused_naming_bind() -> None:
    with pytest.raises(NoLanAddress, match="--bind"):
        pick_lan_address([LO])
    with pytest.raises(NoLanAddress, match=r"--bind.*") as caught:
        pick_lan_address([LO, InterfaceAddress("eth0", "10.0.0.5", UP), InterfaceAddress("wlan0", "10.0.1.5", UP)])
    assert "10.0.0.5 on eth0" in caught.value.message and "10.0.1.5 on wlan0" in caught.value.message


def test_this_machine_is_read_over_netlink() -> None:
    found = interface_addresses()
    assert any(f.address == "127.0.0.1" and f.flags & IFF_LOOPBACK for f in found)
    assert route_source("127.0.0.1") == "127.0.0.1"
