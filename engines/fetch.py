"""Put a manifest's model file in place: already there, a local copy, or a capped, hashed download."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from engines.manifest import ModelError, ModelManifest, load_manifest, sha256_of
from engines.progress import Progress, mebibytes

_DOWNLOAD_CHUNK_BYTES = 1 << 16


def fetch_model(
    manifest_path: Path,
    dest_dir: Path,
    search_dirs: Sequence[Path],
    url_allowed: bool = True,
    timeout_s: float = 60.0,
    progress: bool = False,
) -> Path:
    """Return dest_dir/<manifest.file> holding bytes with the manifest's SHA-256.

    Order: the file already in dest_dir; a copy from the first search dir whose
    file has the right hash; a download of manifest.url (when allowed), at most
    size_bytes read. Files are written to a temporary name and renamed, so
    dest_dir never holds a partial or unverified model. Raises ModelError
    naming the file and what was wrong. `progress`: a progress bar on stderr while copying or downloading.
    """
    manifest = load_manifest(manifest_path)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / manifest.file
    if dest.is_file() and sha256_of(dest) == manifest.sha256:
        return dest
    rejected = [f"{dest}: wrong sha256"] if dest.exists() else []
    for directory in search_dirs:
        candidate = Path(directory) / manifest.file
        if not candidate.is_file():
            continue
        if sha256_of(candidate) != manifest.sha256:
            rejected.append(f"{candidate}: wrong sha256")
            continue
        with _bar(manifest, f"copying {manifest.file}", progress) as bar:
            _install(dest, manifest, f"copy of {candidate}", lambda out, src=candidate: _copy(src, out, bar.update))
        return dest
    if manifest.url is None or not url_allowed:
        why = "the manifest has no url" if manifest.url is None else "downloads are not allowed"
        tried = "; ".join(rejected) or "not found in " + ", ".join(map(str, search_dirs))
        raise ModelError(f"model file {manifest.file!r}: no good local copy ({tried}) and {why}")
    with _bar(manifest, f"downloading {manifest.file}", progress) as bar:
        _install(dest, manifest, f"download from {manifest.url}", lambda out: _download(manifest, out, timeout_s, bar.update))
    return dest


def _bar(manifest: ModelManifest, label: str, shown: bool) -> Progress:
    return Progress(manifest.size_bytes, label, show=mebibytes, shown=shown)


def _copy(src: Path, out: BinaryIO, on_bytes: Callable[[int], None]) -> str:
    digest = hashlib.sha256()
    with open(src, "rb") as f:
        while chunk := f.read(_DOWNLOAD_CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
            on_bytes(len(chunk))
    return digest.hexdigest()


def _download(manifest: ModelManifest, out: BinaryIO, timeout_s: float, on_bytes: Callable[[int], None]) -> str:
    """Stream manifest.url into `out`, refusing more than size_bytes; returns the SHA-256 of what was written."""
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(manifest.url, timeout=timeout_s) as response:
            while chunk := response.read(_DOWNLOAD_CHUNK_BYTES):
                received += len(chunk)
                if received > manifest.size_bytes:
                    raise ModelError(
                        f"model file {manifest.file!r} from {manifest.url}: larger than size_bytes {manifest.size_bytes}"
                    )
                digest.update(chunk)
                out.write(chunk)
                on_bytes(len(chunk))
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise ModelError(f"model file {manifest.file!r}: download from {manifest.url} failed: {exc}") from exc
    if received != manifest.size_bytes:
        raise ModelError(
            f"model file {manifest.file!r} from {manifest.url}: got {received} bytes, expected {manifest.size_bytes}"
        )
    return digest.hexdigest()


def _install(dest: Path, manifest: ModelManifest, source: str, write: Callable[[BinaryIO], str]) -> None:
    """Write via `write` (returns the SHA-256 of what it wrote) to a temporary file beside `dest`,
    check the hash, then rename over `dest`: a crash or a bad source never leaves a partial model."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{manifest.file}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = write(out)
            out.flush()
            os.fsync(out.fileno())
        if actual != manifest.sha256:
            raise ModelError(f"model file {manifest.file!r}: {source} has sha256 {actual}, expected {manifest.sha256}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
