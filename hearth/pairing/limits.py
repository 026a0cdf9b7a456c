"""Per-address limits for the pairing listeners (the host's port and the rendezvous): pure
bookkeeping, no sockets, so tests drive it with their own clock.

An address is what a stranger pays with: an IPv4 address, or an IPv6 /64 (one household's
prefix; a host gets a whole /64, so single IPv6 addresses cost nothing)."""

from __future__ import annotations

import ipaddress
from collections import deque


def client_key(address: str) -> str:
    """The unit a limit counts: the IPv4 address, or the /64 an IPv6 address is in."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class ConnectionLimit:
    """At most `per_key` connections held at once from one address, `total` from all."""

    def __init__(self, per_key: int, total: int) -> None:
        self.per_key, self.total = per_key, total
        self.held: dict[str, int] = {}
        self.all = 0

    def acquire(self, key: str) -> bool:
        if self.held.get(key, 0) >= self.per_key or self.all >= self.total:
            return False
        self.held[key] = self.held.get(key, 0) + 1
        self.all += 1
        return True

    def release(self, key: str) -> None:
        if key not in self.held:
            return
        self.all -= 1
        if self.held[key] > 1:
            self.held[key] -= 1
        else:
            del self.held[key]


class RateLimit:
    """At most `count` events per address in any `window` seconds (a sliding window)."""

    def __init__(self, count: int, window: float, max_keys: int = 4096) -> None:
        self.count, self.window, self.max_keys = count, window, max_keys
        self.events: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        """Count one event for `key` if it is within the limit; False (and nothing counted) if not."""
        if len(self.events) >= self.max_keys:
            self._forget_idle(now)
        stamps = self.events.setdefault(key, deque())
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if len(stamps) >= self.count:
            return False
        stamps.append(now)
        return True

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, s in self.events.items() if not s or s[-1] <= now - self.window]:
            del self.events[key]
