"""The RPC weight cache, owned by the node: one folder per lessee, a size cap, oldest out first.

ggml's RPC server (ggml-rpc.cpp, protocol 7) stores any tensor a client flags into
`cache_dir/<fnv64 of the bytes>` and later serves that file to whoever sends the same hash, with
no check of the bytes. FNV-1a is not collision resistant: a shared folder lets one lessee plant
bytes under the hash of another's weights. The server also takes the client's word on what to
store, so the node caps the folders itself. Each lessee (its node id when paired, else its
address) gets its own folder: what one lessee planted is never served to another.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hearth.node")
MAX_FILES_PER_HOLDER = 2048
"""A lessee may flag tiny tensors too (the server does not check the 10 MiB threshold)."""


@dataclass(frozen=True)
class Entry:
    path: Path
    size: int
    mtime: float


class RpcCache:
    """Per-lessee cache folders under `root`, together at most `limit` bytes (0: no cache)."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def folder(self, holder: str) -> Path | None:
        """The folder the lessee's RPC servers read and write; None when caching is off."""
        if not self.enabled:
            return None
        name = hashlib.sha256(holder.encode()).hexdigest()[:32]
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def _entries(self) -> dict[Path, list[Entry]]:
        folders: dict[Path, list[Entry]] = {}
        if not self.root.is_dir():
            return folders
        for sub in self.root.iterdir():
            if not sub.is_dir() or sub.is_symlink():
                continue
            entries = []
            with os.scandir(sub) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # evicted or replaced meanwhile
                    entries.append(Entry(Path(e.path), st.st_size, st.st_mtime))
            folders[sub] = entries
        return folders

    def enforce(self) -> int:
        """Evict oldest first until each lessee's folder holds at most its share (half the cap
        when several lessees have folders, all of it otherwise; at most MAX_FILES_PER_HOLDER
        files) and all folders together at most the cap. Returns the bytes evicted."""
        folders = self._entries()
        share = self.limit if sum(1 for entries in folders.values() if entries) <= 1 else self.limit // 2
        doomed: list[Entry] = []
        kept: list[Entry] = []
        for entries in folders.values():
            entries.sort(key=lambda e: e.mtime, reverse=True)  # newest first: keep those
            total = 0
            for i, e in enumerate(entries):
                total += e.size
                (doomed if total > share or i >= MAX_FILES_PER_HOLDER else kept).append(e)
        kept.sort(key=lambda e: e.mtime)
        total = sum(e.size for e in kept)
        for e in kept:
            if total <= self.limit:
                break
            doomed.append(e)
            total -= e.size
        freed = 0
        for e in doomed:
            try:
                e.path.unlink()
                freed += e.size
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not evict %s from the RPC cache: %s", e.path.name, exc)
        if freed:
            log.info("RPC cache: evicted %d bytes (cap %d)", freed, self.limit)
        return freed

    def used(self) -> int:
        return sum(e.size for entries in self._entries().values() for e in entries)
