"""The `_hearth._tcp.local.` mDNS record: what a node says about itself, and a strict parser.

Anyone on the LAN can send records, so every field is checked and bounded here (sans-IO; the
zeroconf adapter lives in mdns.py). A record is only a hint: the control API proves the key.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from hearth.errors import HearthError
from hearth.ggml.hello import RpcVersion
from hearth.units import digits

SERVICE_TYPE = "_hearth._tcp.local."
MAX_DEVICES = 8
_ID_RE = re.compile(r"^[a-z2-7]{16}$")
_NAME_RE = re.compile(r"^[\w .'-]{1,63}$")
_VERSION_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}[\w.+-]{0,16}$")
_DEV_RE = re.compile(r"^([A-Za-z][\w.-]{0,31}),(\d{1,16}),(\d{1,16})$")


class RecordError(HearthError):
    """A discovery record that does not parse; the peer is ignored."""

    code = "bad_record"


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    free: int
    total: int


@dataclass(frozen=True)
class PeerRecord:
    node_id: str
    name: str
    version: str
    rpc: RpcVersion
    port: int
    devices: tuple[DeviceInfo, ...]
    addresses: tuple[str, ...] = field(default_factory=tuple)
    full: bool = False
    """No lease slot or no memory left for a new lessee (records without the key: not full)."""

    @property
    def free_bytes(self) -> int:
        return sum(d.free for d in self.devices)

    def to_properties(self) -> dict[str, str]:
        return {
            "id": self.node_id, "name": self.name, "v": self.version, "rpc": str(self.rpc),
            "port": str(self.port),
            "dev": ";".join(f"{d.name},{d.free},{d.total}" for d in self.devices),
            "full": "1" if self.full else "0",
        }


def _text(props: dict[bytes, bytes | None], key: str) -> str:
    raw = props.get(key.encode())
    if raw is None:
        raise RecordError(f"discovery record lacks {key!r}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"discovery record field {key!r} is not UTF-8") from exc


def parse_record(props: dict[bytes, bytes | None], addresses: list[str]) -> PeerRecord:
    node_id = _text(props, "id")
    if not _ID_RE.match(node_id):
        raise RecordError(f"node id {node_id[:40]!r} is not 16 base32 characters")
    name = _text(props, "name")
    if not _NAME_RE.match(name):
        raise RecordError("node name must be 1-63 letters, digits, spaces or . ' - _")
    version = _text(props, "v")
    if not _VERSION_RE.match(version):
        raise RecordError(f"hearth version {version[:40]!r} is not a version")
    try:
        rpc = RpcVersion.parse(_text(props, "rpc"))
    except ValueError as exc:
        raise RecordError(str(exc)) from exc
    port_text = _text(props, "port")
    if not digits(port_text) or not 0 < int(port_text) < 65536:
        raise RecordError(f"control port {port_text[:20]!r} is not a port")
    devices = []
    dev_text = _text(props, "dev")
    for item in dev_text.split(";") if dev_text else []:
        m = _DEV_RE.match(item)
        if not m:
            raise RecordError(f"device entry {item[:40]!r} is not NAME,FREE,TOTAL")
        free, total = int(m.group(2)), int(m.group(3))
        if free > total:
            raise RecordError(f"device {m.group(1)!r} has more free memory than it has")
        devices.append(DeviceInfo(m.group(1), free, total))
    if not devices or len(devices) > MAX_DEVICES:
        raise RecordError(f"a node advertises 1 to {MAX_DEVICES} devices")
    addrs = []
    for a in addresses:
        try:
            addr = ipaddress.ip_address(a)
        except ValueError as exc:
            raise RecordError(f"address {a[:40]!r} is not an IP address") from exc
        if addr.is_unspecified or addr.is_multicast:
            raise RecordError(f"address {a} cannot be a node's")
        addrs.append(str(addr))
    if not addrs:
        raise RecordError("discovery record has no address")
    full = _text(props, "full") if b"full" in props else "0"  # older nodes do not send it
    if full not in ("0", "1"):
        raise RecordError(f"full {full[:20]!r} is not 0 or 1")
    return PeerRecord(node_id, name, version, rpc, int(port_text), tuple(devices), tuple(addrs), full == "1")


PAIR_SERVICE_TYPE = "_hearth-pair._tcp.local."


@dataclass(frozen=True)
class PairingRecord:
    """A machine waiting in `hearth pair`: the nameplate (the code's number) and where to connect."""

    nameplate: int
    name: str
    address: str
    port: int

    def to_properties(self) -> dict[str, str]:
        return {"np": str(self.nameplate), "name": self.name}


def parse_pairing_record(props: dict[bytes, bytes | None], addresses: list[str], port: int) -> PairingRecord:
    nameplate = _text(props, "np")
    if not digits(nameplate) or len(nameplate) > 4 or int(nameplate) == 0:
        raise RecordError(f"nameplate {nameplate[:20]!r} is not a number from 1 to 9999")
    name = _text(props, "name")
    if not _NAME_RE.match(name):
        raise RecordError("machine name must be 1-63 letters, digits, spaces or . ' - _")
    if not 0 < port < 65536:
        raise RecordError(f"pairing port {port} is not a port")
    for a in addresses:
        try:
            addr = ipaddress.ip_address(a)
        except ValueError:
            continue
        if not (addr.is_unspecified or addr.is_multicast):
            return PairingRecord(int(nameplate), name, str(addr), port)
    raise RecordError("pairing record has no usable address")
