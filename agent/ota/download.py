"""Artifact download over HTTP(S): resumable, capped at the signed length, checked by SHA-256.

Bytes go to `<name>.part` beside the destination; an interrupted download
(a dropped connection, or the agent killed) resumes with a Range request from
what the .part file holds, and the file is renamed into place only once its
length and SHA-256 match the signed ones. Nothing beyond the signed length is
ever read: a server offering more is refused as `oversized`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

import structlog

from agent.ota.errors import ErrorCode, OtaError
from agent.ota.manifest import Artifact
from engines.atomic import fsync_dir

log = structlog.get_logger(__name__)

CHUNK_BYTES = 64 * 1024
READ_TIMEOUT_S = 30.0
TOTAL_TIMEOUT_S = 1800.0
ATTEMPTS = 3
RETRY_DELAY_S = 1.0

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Retryable(Exception):
    """A failure worth another attempt (the connection dropped, the server hiccuped); code if it persists."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def download(
    artifact: Artifact,
    dest: Path,
    *,
    read_timeout_s: float = READ_TIMEOUT_S,
    total_timeout_s: float = TOTAL_TIMEOUT_S,
    attempts: int = ATTEMPTS,
    retry_delay_s: float = RETRY_DELAY_S,
) -> Path:
    """Fetch `artifact` to `dest` and return it; a `dest` already complete and correct is kept.

    Raises OtaError: `oversized` (the server sends or announces more than
    `size_bytes`), `truncated` (the body keeps ending early), `hash_mismatch`
    (right length, wrong bytes), `download_failed` (HTTP errors, timeouts,
    refused connections, after `attempts` tries).
    """
    if dest.is_file() and dest.stat().st_size == artifact.size_bytes and _sha256_of(dest) == artifact.sha256:
        return dest
    part = dest.with_name(dest.name + ".part")
    deadline = time.monotonic() + total_timeout_s
    for attempt in range(1, max(1, attempts) + 1):
        try:
            _fetch_into(artifact, part, read_timeout_s, deadline)
            break
        except _Retryable as exc:
            log.warning(
                "ota_download_retry", artifact=artifact.name, attempt=attempt, code=exc.code, error=exc.message
            )
            if attempt >= attempts or time.monotonic() + retry_delay_s >= deadline:
                raise OtaError(exc.code, f"{artifact.name}: {exc.message} (after {attempt} attempts)") from exc
            time.sleep(retry_delay_s)
    actual = _sha256_of(part)
    if actual != artifact.sha256:
        part.unlink()  # wrong bytes: a retry must not resume from them
        raise OtaError(ErrorCode.HASH_MISMATCH, f"{artifact.name}: sha256 {actual}, signed {artifact.sha256}")
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest


def _fetch_into(artifact: Artifact, part: Path, read_timeout_s: float, deadline: float) -> None:
    """One HTTP request appending to `part` until it holds `size_bytes`; _Retryable or OtaError otherwise."""
    size = artifact.size_bytes
    have = part.stat().st_size if part.exists() else 0
    if have > size:  # cannot come from us; start over rather than trust it
        part.unlink()
        have = 0
    if have == size:
        return
    request = urllib.request.Request(artifact.url, headers={"Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=read_timeout_s)  # noqa: S310 - scheme checked by the manifest
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our Range is past what the server has: the .part is suspect
            part.unlink()
            raise _Retryable(ErrorCode.TRUNCATED, f"server has fewer than {have + 1} bytes") from exc
        raise _Retryable(ErrorCode.DOWNLOAD_FAILED, f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _Retryable(ErrorCode.DOWNLOAD_FAILED, f"cannot connect: {exc}") from exc
    with response:
        start = _start_offset(response, have)
        remaining = size - start
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > remaining:
            part.unlink(missing_ok=True)
            raise OtaError(ErrorCode.OVERSIZED, f"server announces {start + int(length)} bytes, signed {size}")
        with open(part, "r+b" if start else "wb") as f:
            f.seek(start)
            f.truncate()
            _copy_capped(response, f, remaining, deadline, part)
            f.flush()
            os.fsync(f.fileno())
        # Read one byte past the signed length: a body that goes on is refused, and nothing more is read.
        if _read(response, 1, deadline):
            part.unlink()
            raise OtaError(ErrorCode.OVERSIZED, f"server sends more than the signed {size} bytes; stopped there")


def _start_offset(response: http.client.HTTPResponse, have: int) -> int:
    """Where this response's body starts in the file: `have` for a 206 that honours our Range, else 0."""
    if response.status != 206:
        return 0  # the server ignored Range: start over
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None or int(match.group(1)) != have:
        raise _Retryable(ErrorCode.DOWNLOAD_FAILED, "206 response without a Content-Range matching our Range")
    return have


def _copy_capped(
    response: http.client.HTTPResponse, f: BinaryIO, remaining: int, deadline: float, part: Path
) -> None:
    written = 0
    while written < remaining:
        chunk = _read(response, min(CHUNK_BYTES, remaining - written), deadline)
        if not chunk:
            f.flush()  # keep what arrived: the next attempt resumes after it
            raise _Retryable(ErrorCode.TRUNCATED, f"body ended after {part.stat().st_size} of the signed bytes")
        f.write(chunk)
        written += len(chunk)


def _read(response: http.client.HTTPResponse, n_bytes: int, deadline: float) -> bytes:
    if time.monotonic() > deadline:
        raise OtaError(ErrorCode.DOWNLOAD_FAILED, "download took longer than its total timeout")
    try:
        return response.read(n_bytes)
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, IncompleteRead
        raise _Retryable(ErrorCode.TRUNCATED, f"connection lost: {exc}") from exc


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
