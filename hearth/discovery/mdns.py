"""zeroconf adapter: advertise this node's record and browse for others (no parsing here)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from hearth.discovery.records import (
    PAIR_SERVICE_TYPE,
    SERVICE_TYPE,
    PairingRecord,
    PeerRecord,
    RecordError,
    parse_pairing_record,
    parse_record,
)


def _zeroconf(address: str | None) -> Zeroconf:
    # Bind to the node's own interface address: in a namespace or on a multi-homed machine the
    # default (all interfaces) would answer on networks hearth was not asked to use.
    return Zeroconf(interfaces=[address]) if address else Zeroconf()


def _info(record: PeerRecord, address: str) -> ServiceInfo:
    instance = f"{record.name.replace('.', '-')}-{record.node_id[:6]}"
    return ServiceInfo(
        SERVICE_TYPE, f"{instance}.{SERVICE_TYPE}",
        addresses=[socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)],
        port=record.port, properties=record.to_properties(), server=f"{instance}.local.",
    )


class Advertiser:
    def __init__(self, record: PeerRecord, address: str) -> None:
        self.address = address
        self.zc = _zeroconf(address)
        self.info = _info(record, address)
        self.zc.register_service(self.info)

    def update(self, record: PeerRecord) -> None:
        """New free-memory figures, same service name."""
        self.info = _info(record, self.address)
        self.zc.update_service(self.info)

    def close(self) -> None:
        self.zc.unregister_service(self.info)
        self.zc.close()


class Browser:
    """Keeps the current set of parsed peer records; malformed ones are reported and skipped."""

    def __init__(self, address: str | None = None, on_error: Callable[[str, RecordError], None] | None = None) -> None:
        self.zc = _zeroconf(address)
        self._lock = threading.Lock()
        self._peers: dict[str, PeerRecord] = {}
        self.errors: list[str] = []
        self._on_error = on_error
        self.browser = ServiceBrowser(self.zc, SERVICE_TYPE, handlers=[self._changed])

    def _changed(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            with self._lock:
                self._peers.pop(name, None)
            return
        info = zeroconf.get_service_info(service_type, name, timeout=2000)
        if info is None:
            return
        try:
            record = parse_record(dict(info.properties), info.parsed_addresses())
        except RecordError as exc:
            self.errors.append(f"{name}: {exc.message}")
            if self._on_error:
                self._on_error(name, exc)
            return
        with self._lock:
            self._peers[name] = record

    def peers(self) -> list[PeerRecord]:
        with self._lock:
            return sorted(self._peers.values(), key=lambda r: r.name)

    def close(self) -> None:
        self.browser.cancel()
        self.zc.close()


class PairingAdvertiser:
    """`hearth pair` waiting: lets the guest find this machine by the code's nameplate."""

    def __init__(self, record: PairingRecord) -> None:
        self.zc = _zeroconf(record.address)
        instance = f"{record.name.replace('.', '-')}-{record.nameplate}"
        family = socket.AF_INET6 if ":" in record.address else socket.AF_INET
        self.info = ServiceInfo(PAIR_SERVICE_TYPE, f"{instance}.{PAIR_SERVICE_TYPE}",
                                addresses=[socket.inet_pton(family, record.address)], port=record.port,
                                properties=record.to_properties(), server=f"{instance}.local.")
        self.zc.register_service(self.info)

    def close(self) -> None:
        self.zc.unregister_service(self.info)
        self.zc.close()


def find_pairing_host(nameplate: int, wait: float, address: str | None = None) -> PairingRecord | None:
    """The machine advertising this nameplate, waiting up to `wait` seconds; malformed records are skipped."""
    found: list[PairingRecord] = []
    ready = threading.Event()

    def changed(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            return
        info = zeroconf.get_service_info(service_type, name, timeout=2000)
        if info is None or info.port is None:
            return
        try:
            record = parse_pairing_record(dict(info.properties), info.parsed_addresses(), info.port)
        except RecordError:
            return
        if record.nameplate == nameplate:
            found.append(record)
            ready.set()

    zc = _zeroconf(address)
    browser = ServiceBrowser(zc, PAIR_SERVICE_TYPE, handlers=[changed])
    try:
        ready.wait(wait)
    finally:
        browser.cancel()
        zc.close()
    return found[0] if found else None
