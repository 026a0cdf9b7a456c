"""The circle's WireGuard interface (`hearth0`): create it, give it an address, keep its peers.

Peers are configured through the `wireguard-tools` package: kernel netlink (pyroute2) where the
kernel has WireGuard, otherwise the userspace `wireguard-go` daemon through its UAPI socket in
/var/run/wireguard (shared by every network namespace, so interface names must differ between
namespaces on one machine). Creating the interface needs root or CAP_NET_ADMIN.
pyroute2's synchronous API runs an event loop of its own: from async code, call `up()` and
`down()` in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import HearthError
from hearth.net.endpoint import Endpoint
from hearth.ports import DEFAULT_WG_PORT

log = logging.getLogger("hearth.wireguard")

TUNNEL_NET = ipaddress.IPv4Network("10.99.0.0/16")
UAPI_DIR = Path("/var/run/wireguard")
KEEPALIVE_S = 25
CAP_NET_ADMIN = 12


class TunnelUnavailable(HearthError):
    """WireGuard cannot be set up here; the message says what is missing and offers the fallback."""

    code = "tunnel_unavailable"
    exit_code = 8


def tunnel_address(identity_key: bytes) -> str:
    """A node's address in the circle, derived from its identity key (same on every machine)."""
    host = int.from_bytes(hashlib.sha256(b"hearth-tunnel" + identity_key).digest()[:2], "big")
    host = min(max(host, 1), TUNNEL_NET.num_addresses - 2)  # not the network or broadcast address
    return str(TUNNEL_NET.network_address + host)


def load_or_create_key(home: Path) -> str:
    """This machine's WireGuard private key (base64), kept 0600 beside the node key."""
    from wireguard_tools import WireguardKey

    path = home / "identity" / "wireguard.key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = str(WireguardKey.generate())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def public_key(private_key: str) -> str:
    from wireguard_tools import WireguardKey

    return str(WireguardKey(private_key).public_key())


def _has_cap_net_admin() -> bool:
    """From the effective capabilities, not the user id: root without CAP_NET_ADMIN (a container,
    `setpriv --bounding-set -net_admin`) cannot create interfaces either."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return os.geteuid() == 0


def missing() -> str | None:
    """Why WireGuard cannot be set up here, or None when it can."""
    if not _has_cap_net_admin():
        return ("Creating the WireGuard interface needs root or CAP_NET_ADMIN: run it with sudo, "
                "or use the unprivileged encrypted fallback (HEARTH_TUNNEL=sealed).")
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing, so wireguard-go cannot run; use HEARTH_TUNNEL=sealed."
    if shutil.which("wireguard-go") is None and not _kernel_wireguard():
        return ("This kernel has no WireGuard module and wireguard-go is not installed "
                "(apt install wireguard-go wireguard-tools); or use HEARTH_TUNNEL=sealed.")
    return None


def _kernel_wireguard() -> bool:
    return Path("/sys/module/wireguard").exists()


@dataclass(frozen=True)
class WgPeer:
    public_key: str
    tunnel_address: str
    endpoint: str | None
    """host:port of the peer's WireGuard socket, as it announced it."""


class WireGuardInterface:
    """One interface with one address in TUNNEL_NET; `up()` is idempotent."""

    def __init__(self, name: str, private_key: str, address: str, listen_port: int = DEFAULT_WG_PORT,
                 log_path: Path | None = None) -> None:
        if not 1 <= len(name) <= 15 or not name.replace("-", "").replace("_", "").isalnum():
            raise HearthError(f"WireGuard interface name {name!r}: 1 to 15 letters, digits, - or _.")
        self.name = name
        self.private_key = private_key
        self.address = address
        self.listen_port = listen_port
        self.log_path = log_path

    @property
    def socket_path(self) -> Path:
        return UAPI_DIR / f"{self.name}.sock"

    def exists(self) -> bool:
        try:
            socket.if_nametoindex(self.name)  # this network namespace's interfaces only
        except OSError:
            return False
        return True

    def up(self) -> None:
        problem = missing()
        if problem is not None:
            raise TunnelUnavailable(problem)
        if not self.exists():
            self._create()
        self._configure_link()
        self._set(self._device_peers(), force=True)

    def _create(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        if _kernel_wireguard():
            with IPRoute() as ip, contextlib.suppress(NetlinkError):
                ip.link("add", ifname=self.name, kind="wireguard")
                return
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a socket left by a daemon that died
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            # Foreground, in its own session: the daemon outlives this command, like wg-quick's.
            daemon = subprocess.Popen(["wireguard-go", self.name],
                                            env={**os.environ, "WG_PROCESS_FOREGROUND": "1"},
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + 5
        while not (self.socket_path.exists() and self.exists()):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise TunnelUnavailable(f"wireguard-go did not create {self.name}; see {self.log_path}.")
            time.sleep(0.02)

    def _configure_link(self) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ip:
            index = ip.link_lookup(ifname=self.name)[0]
            have = {a.get_attr("IFA_ADDRESS") for a in ip.get_addr(index=index)}
            if self.address not in have:
                ip.addr("add", index=index, address=self.address, prefixlen=TUNNEL_NET.prefixlen)
            ip.link("set", index=index, state="up")

    def _config(self) -> Any:
        from wireguard_tools import WireguardDevice

        device = WireguardDevice.get(self.name)
        try:
            return device.get_config()
        finally:
            device.close()

    def _device_peers(self) -> list[WgPeer]:
        config = self._config()
        peers = []
        for key, p in config.peers.items():
            endpoint = str(Endpoint(str(p.endpoint_host), int(p.endpoint_port))) if p.endpoint_host else None
            address = str(p.allowed_ips[0].ip) if p.allowed_ips else ""
            peers.append(WgPeer(str(key), address, endpoint))
        return peers

    def peers(self) -> list[WgPeer]:
        return sorted(self._device_peers(), key=lambda p: p.public_key)

    def set_peers(self, peers: list[WgPeer]) -> None:
        """Make the interface's peers exactly these (a no-op when they already are)."""
        self._set(peers, force=False)

    def _set(self, peers: list[WgPeer], force: bool) -> None:
        from wireguard_tools import WireguardConfig, WireguardDevice, WireguardPeer

        wanted = sorted(peers, key=lambda p: p.public_key)
        if not force and wanted == self.peers():
            return
        config = WireguardConfig(private_key=self.private_key, listen_port=self.listen_port)
        for p in wanted:
            if p.endpoint is None:
                continue  # wireguard-tools needs an endpoint; the peer reaches us and we learn it
            at = Endpoint.parse(p.endpoint)
            config.add_peer(WireguardPeer(public_key=p.public_key, endpoint_host=at.host, endpoint_port=at.port,
                                          persistent_keepalive=KEEPALIVE_S,
                                          allowed_ips=[f"{p.tunnel_address}/32"]))
        device = WireguardDevice.get(self.name)
        try:
            device.set_config(config)
        finally:
            device.close()

    def remove_peer(self, public_key: str) -> bool:
        """Drop one peer at once (its packets are refused from then on); False if it was not there."""
        current = self.peers()
        kept = [p for p in current if p.public_key != public_key]
        if len(kept) == len(current):
            return False
        self._set(kept, force=True)
        return True
