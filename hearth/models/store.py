"""A content-addressed model store under the data folder.

    models/blobs/sha256-<hex>        the bytes, named by their hash
    models/manifests/<name>.json     name -> ordered files (several for a split GGUF)
    models/links/<name>/<filename>   symlinks with the original names, so llama.cpp finds the
                                     other parts of a split GGUF next to the first one
    models/partial/                  downloads in progress (resumable)
    models/locks/                    one lock file per URL or alias being pulled
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from hearth.errors import InvalidRequest, ModelNotFound
from hearth.models.catalogue import validate_name

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes total or None)."""


@dataclass(frozen=True)
class StoredFile:
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    name: str
    files: tuple[StoredFile, ...]
    source: str
    pulled_at: float

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def digest(self) -> str:
        return self.files[0].sha256

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "files": [asdict(f) for f in self.files],
            "source": self.source,
            "pulled_at": self.pulled_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        files = tuple(StoredFile(str(f["filename"]), str(f["sha256"]), int(f["size"])) for f in data["files"])
        return cls(str(data["name"]), files, str(data["source"]), float(data["pulled_at"]))


def _copy_hashing(source: BinaryIO, out: BinaryIO, progress: Progress | None) -> tuple[str, int]:
    h = hashlib.sha256()
    total = os.fstat(source.fileno()).st_size
    done = 0
    while block := source.read(CHUNK):
        h.update(block)
        out.write(block)
        done += len(block)
        if progress:
            progress(done, total)
    return h.hexdigest(), done


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return h.hexdigest()


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.links = root / "links"
        self.partial = root / "partial"
        self.locks = root / "locks"
        for d in (self.blobs, self.manifests, self.links, self.partial, self.locks):
            d.mkdir(parents=True, exist_ok=True)

    # -- reading ---------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / f"sha256-{digest}"

    def _manifest_path(self, name: str) -> Path:
        return self.manifests / f"{validate_name(name)}.json"

    def get(self, name: str) -> Manifest | None:
        path = self._manifest_path(name)
        if not path.exists():
            return None
        return Manifest.from_json(json.loads(path.read_text()))

    def all(self) -> list[Manifest]:
        out = []
        for p in sorted(self.manifests.glob("*.json")):
            out.append(Manifest.from_json(json.loads(p.read_text())))
        return out

    def model_path(self, name: str) -> Path:
        """The path llama.cpp should open: the blob, or the first part's link for a split."""
        manifest = self.get(name)
        if manifest is None:
            raise ModelNotFound(f"Model {name!r} is not in the store; run `hearth pull {name}`.")
        missing = [f.filename for f in manifest.files if not self.blob_path(f.sha256).exists()]
        if missing:
            raise ModelNotFound(
                f"Model {name!r} is missing {', '.join(missing)}; run `hearth pull {name}` again."
            )
        if len(manifest.files) == 1:
            return self.blob_path(manifest.digest)
        link_dir = self.links / manifest.name
        link_dir.mkdir(parents=True, exist_ok=True)
        for f in manifest.files:
            link = link_dir / f.filename
            if not link.is_symlink():
                link.symlink_to(self.blob_path(f.sha256))
        return link_dir / manifest.files[0].filename

    def part_paths(self, name: str) -> list[Path]:
        manifest = self.get(name)
        if manifest is None:
            raise ModelNotFound(f"Model {name!r} is not in the store; run `hearth pull {name}`.")
        return [self.blob_path(f.sha256) for f in manifest.files]

    # -- writing ---------------------------------------------------------------------------
    def add_blob(self, src: Path, *, expected: str | None = None, move: bool = False,
                 progress: Progress | None = None) -> StoredFile:
        """Place a file in the store under its hash.

        move=True is for the store's own files (finished downloads): they are renamed. Any other
        file is copied, never hard-linked: a link would share the user's inode, so the store's
        chmod changed the user's own file, and an edit of that file would silently change a blob
        named by its old hash. The copy keeps the source's restrictions (a 0600 file stays
        private) and is hashed while it is written, so the source is read once.
        """
        if move:
            digest = sha256_file(src, progress)
            self._check(src, digest, expected)
            size = src.stat().st_size
            dest = self.blob_path(digest)
            if dest.exists():
                src.unlink()
            else:
                os.chmod(src, 0o644)
                os.replace(src, dest)
            return StoredFile(src.name, digest, size)
        fd, tmp_name = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
        tmp = Path(tmp_name)
        try:
            with open(src, "rb") as source, os.fdopen(fd, "wb") as out:
                mode = stat.S_IMODE(os.fstat(source.fileno()).st_mode)
                digest, size = _copy_hashing(source, out, progress)
            self._check(src, digest, expected)
            dest = self.blob_path(digest)
            if not dest.exists():
                os.chmod(tmp, (mode | stat.S_IRUSR) & 0o644)
                os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return StoredFile(src.name, digest, size)

    @staticmethod
    def _check(src: Path, digest: str, expected: str | None) -> None:
        if expected is not None and digest != expected.lower():
            raise InvalidRequest(
                f"{src.name}: sha256 is {digest}, expected {expected}; the file is corrupt or not "
                "the one named."
            )

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock named `key` (between processes and threads) while pulling one
        thing: two pulls of the same URL or alias would otherwise share one partial file."""
        path = self.locks / f"{key}.lock"  # never deleted: unlinking a lock file races its waiters
        with path.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def write_manifest(self, name: str, files: list[StoredFile], source: str) -> Manifest:
        manifest = Manifest(validate_name(name), tuple(files), source, time.time())
        path = self._manifest_path(name)
        fd, tmp = tempfile.mkstemp(dir=self.manifests, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(manifest.to_json(), f, indent=2)
        os.replace(tmp, path)
        shutil.rmtree(self.links / manifest.name, ignore_errors=True)
        return manifest

    def remove(self, name: str) -> Manifest:
        """Forget a model and delete the blobs no other manifest uses."""
        manifest = self.get(name)
        if manifest is None:
            raise ModelNotFound(f"Model {name!r} is not in the store; `hearth models` lists them.")
        self._manifest_path(name).unlink()
        shutil.rmtree(self.links / manifest.name, ignore_errors=True)
        in_use = {f.sha256 for m in self.all() for f in m.files}
        for f in manifest.files:
            if f.sha256 not in in_use:
                self.blob_path(f.sha256).unlink(missing_ok=True)
        return manifest
