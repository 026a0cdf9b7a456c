"""Resumable HTTP downloads into the store's partial folder, verified by sha256."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx

from hearth.errors import DownloadFailed
from hearth.models.store import CHUNK, Progress
from hearth.units import digits

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _partial_path(partial_dir: Path, url: str) -> Path:
    return partial_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".part")


def _hash_prefix(path: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h


def expected_from_headers(headers: httpx.Headers) -> str | None:
    """Hugging Face sends the LFS sha256 as X-Linked-Etag; plain servers may send it as ETag."""
    for key in ("x-linked-etag", "etag"):
        value = str(headers.get(key, "")).strip().strip('"').removeprefix("W/").strip('"').lower()
        if _HEX64.match(value):
            return value
    return None


def download(url: str, partial_dir: Path, *, expected_sha256: str | None = None,
             progress: Progress | None = None, timeout: float = 30.0,
             client: httpx.Client | None = None) -> tuple[Path, str]:
    """Download url, resuming a previous partial file; return (path, sha256).

    The partial file is kept when the transfer breaks, so the next call resumes with a Range
    request. It is deleted when the finished file's hash does not match.
    """
    if not url.startswith(("http://", "https://")):
        raise DownloadFailed(f"{url!r} is not an http(s) URL.")
    part = _partial_path(partial_dir, url)
    have = part.stat().st_size if part.exists() else 0
    h = _hash_prefix(part) if have else hashlib.sha256()
    headers = {"Range": f"bytes={have}-"} if have else {}
    total: int | None
    own = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=timeout)
    try:
        with http.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 416 and have:
                # Range not satisfiable: the partial file is already complete (or stale).
                total = have
            elif resp.status_code not in (200, 206):
                raise DownloadFailed(f"GET {url} answered HTTP {resp.status_code}; check the URL.")
            else:
                if resp.status_code == 200 and have:
                    have, h = 0, hashlib.sha256()  # server ignored Range: start over
                expected_sha256 = expected_sha256 or expected_from_headers(resp.headers)
                length = resp.headers.get("content-length")
                total = have + int(length) if length and digits(length) else None
                mode = "ab" if have else "wb"
                done = have
                with part.open(mode) as f:
                    for block in resp.iter_bytes(CHUNK):
                        f.write(block)
                        h.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
                if total is not None and done < total:
                    raise DownloadFailed(
                        f"GET {url} ended at {done} of {total} bytes; run the pull again to resume."
                    )
    except httpx.HTTPError as exc:
        raise DownloadFailed(
            f"GET {url} failed ({type(exc).__name__}: {exc}); run the pull again to resume."
        ) from exc
    finally:
        if own:
            http.close()
    digest = h.hexdigest()
    if expected_sha256 and digest != expected_sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadFailed(
            f"{url}: sha256 {digest} does not match the expected {expected_sha256}; the partial "
            "file was deleted, pull again."
        )
    return part, digest
