from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from hearth.errors import DownloadFailed, InvalidRequest, ModelNotFound
from hearth.models.catalogue import CATALOGUE
from hearth.models.pull import pull, resolve
from hearth.models.store import ModelStore
from tests.conftest import HEARTH, hearth_env
from tests.models.httpfixture import Files, file_server

BLOB = b"GGUF" + os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def test_pull_url_stores_by_hash_with_progress(store: ModelStore) -> None:
    files = Files({"/m/tiny-q4.gguf": BLOB})
    seen: list[tuple[int, int | None]] = []
    with file_server(files) as url:
        m = pull(store, f"{url}/m/tiny-q4.gguf", progress=lambda d, t: seen.append((d, t)))
    digest = hashlib.sha256(BLOB).hexdigest()
    assert m.name == "tiny-q4" and m.digest == digest and m.size == len(BLOB)
    assert store.model_path("tiny-q4").read_bytes() == BLOB
    assert store.model_path("tiny-q4").name == f"sha256-{digest}"
    assert seen[-1] == (len(BLOB), len(BLOB))
    assert not list(store.partial.iterdir())


def test_broken_download_resumes_with_a_range_request(store: ModelStore) -> None:
    files = Files({"/big.gguf": BLOB}, drop_after={"/big.gguf": 1024 * 1024})
    with file_server(files) as url:
        with pytest.raises(DownloadFailed, match="resume"):
            pull(store, f"{url}/big.gguf")
        assert store.get("big") is None
        kept = sum(p.stat().st_size for p in store.partial.iterdir())
        assert 0 < kept < len(BLOB)
        m = pull(store, f"{url}/big.gguf")
    assert files.requests[-1] == ("/big.gguf", f"bytes={kept}-")
    assert m.digest == hashlib.sha256(BLOB).hexdigest()
    assert store.model_path("big").read_bytes() == BLOB


def test_hash_mismatch_deletes_the_download(store: ModelStore) -> None:
    files = Files({"/x.gguf": BLOB}, send_hash=False)
    with file_server(files) as url:
        with pytest.raises(DownloadFailed, match="does not match"):
            pull(store, f"{url}/x.gguf", sha256="0" * 64)
    assert store.all() == [] and not list(store.partial.iterdir()) and not list(store.blobs.iterdir())


def test_http_errors_are_clear(store: ModelStore) -> None:
    with file_server(Files()) as url:
        with pytest.raises(DownloadFailed, match="HTTP 404"):
            pull(store, f"{url}/missing.gguf")
    with pytest.raises(DownloadFailed, match="only http"):
        pull(store, "ftp://example.invalid/x.gguf")
    port_nobody_listens = 9
    with pytest.raises(DownloadFailed, match="failed"):
        pull(store, f"http://127.0.0.1:{port_nobody_listens}/x.gguf")


def test_catalogue_split_model_pulls_every_part(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = CATALOGUE["qwen2.5-7b"]
    parts = {f"/{entry.hf_repo}/resolve/main/{f}": b"GGUF" + os.urandom(4096) for f in entry.files}
    with file_server(Files(parts)) as url:
        monkeypatch.setenv("HEARTH_HF_ENDPOINT", url)
        m = pull(store, "qwen2.5-7b")
    assert [f.filename for f in m.files] == list(entry.files)
    first = store.model_path("qwen2.5-7b")
    # llama.cpp finds the other parts by name next to the first
    assert first.name == entry.files[0]
    assert sorted(p.name for p in first.parent.iterdir()) == sorted(entry.files)
    for f in entry.files:
        assert (first.parent / f).read_bytes() == parts[f"/{entry.hf_repo}/resolve/main/{f}"]


def test_pull_local_path_and_remove(store: ModelStore, tmp_path: Path) -> None:
    src = tmp_path / "Local-Model.gguf"
    src.write_bytes(BLOB)
    m = pull(store, str(src))
    assert m.name == "local-model" and src.exists()
    m2 = pull(store, str(src), name="alias-of-same")
    assert m2.digest == m.digest and len(list(store.blobs.iterdir())) == 1
    store.remove("local-model")
    assert store.blob_path(m.digest).exists()  # still used by alias-of-same
    store.remove("alias-of-same")
    assert not store.blob_path(m.digest).exists()
    with pytest.raises(ModelNotFound):
        store.remove("alias-of-same")


def test_pull_refuses_what_is_not_a_model(store: ModelStore, tmp_path: Path) -> None:
    txt = tmp_path / "notes.gguf"
    txt.write_text("hello")
    with pytest.raises(InvalidRequest, match="not a GGUF"):
        pull(store, str(txt))
    with pytest.raises(InvalidRequest, match="not a file"):
        pull(store, str(tmp_path))
    with pytest.raises(ModelNotFound, match="not a catalogue alias"):
        pull(store, "no-such-model-anywhere")
    with pytest.raises(InvalidRequest):
        pull(store, "   ")
    with pytest.raises(InvalidRequest, match="not valid"):
        pull(store, str(txt), name="../escape")


def test_resolve_imports_embedded_model_and_refuses_unknown(store: ModelStore) -> None:
    name, path = resolve(store, "smollm2")
    assert name == "smollm2-135m" and path.read_bytes()[:4] == b"GGUF"
    with pytest.raises(ModelNotFound, match="hearth pull qwen2.5-72b"):
        resolve(store, "qwen2.5-72b")
    with pytest.raises(ModelNotFound):
        resolve(store, "Weird/Name")
    # a blob that went missing is reported, not loaded
    store.blob_path(store.get("smollm2-135m").digest).unlink()  # type: ignore[union-attr]
    with pytest.raises(ModelNotFound, match="missing"):
        store.model_path("smollm2-135m")


def test_pull_never_changes_the_users_own_file(store: ModelStore, tmp_path: Path) -> None:
    """A 0600 original stays 0600 and unlinked to the store; the stored copy stays private too,
    and editing the original afterwards does not change the blob named by its hash."""
    src = tmp_path / "private.gguf"
    src.write_bytes(BLOB)
    src.chmod(0o600)
    m = pull(store, str(src))
    after = src.stat()
    assert stat.S_IMODE(after.st_mode) == 0o600
    assert after.st_nlink == 1  # not hard-linked into the store
    blob = store.blob_path(m.digest)
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    with src.open("r+b") as f:
        f.seek(100)
        f.write(b"edited")
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == m.digest
    assert [p.name for p in store.blobs.iterdir()] == [blob.name]  # no temporary copy left


def test_pull_through_a_relative_symlink(store: ModelStore, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "m.gguf").write_bytes(BLOB)
    links = tmp_path / "links"
    links.mkdir()
    (links / "linked.gguf").symlink_to("../real/m.gguf")
    (links / "broken.gguf").symlink_to("../real/gone.gguf")
    monkeypatch.chdir(tmp_path)
    m = pull(store, "links/linked.gguf")
    blob = store.blob_path(m.digest)
    assert m.name == "linked" and not blob.is_symlink() and blob.read_bytes() == BLOB
    assert store.model_path("linked").read_bytes() == BLOB
    assert m.source == f"file:{tmp_path / 'real' / 'm.gguf'}"
    with pytest.raises(InvalidRequest, match="symbolic link to '../real/gone.gguf', which does not exist"):
        pull(store, "links/broken.gguf")
    assert [p.name for p in store.blobs.iterdir()] == [blob.name]


@pytest.mark.slow
def test_concurrent_pulls_of_one_url_both_succeed(tmp_path: Path) -> None:
    """Two real `hearth pull` processes of the same URL at once: one downloads, the other waits
    for it and takes its result; both exit 0 with the same model, nothing left half-done."""
    files = Files({"/m/shared.gguf": BLOB}, pace=0.1)  # about 5 s per transfer
    with file_server(files) as url:
        procs = [subprocess.Popen([*HEARTH, "pull", f"{url}/m/shared.gguf"], env=hearth_env(tmp_path),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        try:
            results = [(p.wait(120), *p.communicate()) for p in procs]
        finally:
            for p in procs:
                p.kill()
    for code, _, stderr in results:
        assert code == 0 and "Traceback" not in stderr, stderr
    store = ModelStore(tmp_path / "models")
    m = store.get("shared")
    assert m is not None and store.model_path("shared").read_bytes() == BLOB
    assert not list(store.partial.iterdir())
    assert [p.name for p in store.blobs.iterdir()] == [f"sha256-{m.digest}"]
    full_downloads = [r for r in files.requests if r[1] is None]
    assert len(full_downloads) == 1, files.requests  # the second pull waited and reused the first
