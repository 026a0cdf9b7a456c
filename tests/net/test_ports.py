"""hearth's ports are named once, and the defaults that people and peers see are those names."""

from __future__ import annotations

import inspect

from hearth import ports
from hearth.pairing.exchange import PairingInfo
from hearth.pairing.rendezvous import Rendezvous
from hearth.settings import Settings
from hearth.tunnel.wireguard import WireGuardInterface


def test_each_port_is_its_own() -> None:
    named = {name: value for name, value in vars(ports).items() if name.endswith("_PORT")}
    assert len(named) >= 6 and len(set(named.values())) == len(named), named
    assert all(0 < port < 65536 for port in named.values())


def test_defaults_use_the_named_ports() -> None:
    assert Settings.model_fields["port"].default == ports.DEFAULT_SERVE_PORT == 11435
    assert Settings.model_fields["wg_port"].default == ports.DEFAULT_WG_PORT == 51820
    assert PairingInfo.__dataclass_fields__["agent_port"].default == ports.DEFAULT_NODE_PORT == 11436
    assert inspect.signature(Rendezvous).parameters["port"].default == ports.DEFAULT_RENDEZVOUS_PORT == 11438
    assert inspect.signature(WireGuardInterface).parameters["listen_port"].default == ports.DEFAULT_WG_PORT
    assert ports.DEFAULT_PAIR_PORT == 11437
    assert ports.DEFAULT_COORDINATOR_PORT == 11440
