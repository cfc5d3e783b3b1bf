"""Artifact download against a real HTTP server on loopback: resume, caps, hashes, failures."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agent.ota.download import download
from agent.ota.errors import ErrorCode, OtaError
from agent.ota.manifest import Artifact
from tests.agent.ota.http_server import ArtifactServer, Served

BODY = os.urandom(300_000)
FAST = {"attempts": 2, "retry_delay_s": 0.0, "read_timeout_s": 5.0}


def _artifact(url: str, body: bytes = BODY) -> Artifact:
    return Artifact(name="m.onnx", url=url, sha256=hashlib.sha256(body).hexdigest(), size_bytes=len(body))


def test_downloads_and_checks(artifact_server: ArtifactServer, tmp_path: Path) -> None:
    url = artifact_server.serve("m.onnx", Served(BODY))
    path = download(_artifact(url), tmp_path / "m.onnx", **FAST)
    assert path.read_bytes() == BODY
    assert not (tmp_path / "m.onnx.part").exists()


def test_a_dropped_connection_resumes_with_a_range_request(artifact_server: ArtifactServer, tmp_path: Path) -> None:
    served = Served(BODY, drop_after_bytes=100_000)
    url = artifact_server.serve("m.onnx", served)
    assert download(_artifact(url), tmp_path / "m.onnx", **FAST).read_bytes() == BODY
    assert served.requests == [None, "bytes=100000-"]
    assert served.sent_bytes == len(BODY)  # nothing fetched twice


def test_a_part_file_left_by_a_crash_is_resumed(artifact_server: ArtifactServer, tmp_path: Path) -> None:
    served = Served(BODY)
    url = artifact_server.serve("m.onnx", served)
    (tmp_path / "m.onnx.part").write_bytes(BODY[:12345])
    assert download(_artifact(url), tmp_path / "m.onnx", **FAST).read_bytes() == BODY
    assert served.requests == ["bytes=12345-"]


def test_a_server_ignoring_range_restarts_from_zero(artifact_server: ArtifactServer, tmp_path: Path) -> None:
    url = artifact_server.serve("m.onnx", Served(BODY, ignore_range=True))
    (tmp_path / "m.onnx.part").write_bytes(BODY[:5000])
    assert download(_artifact(url), tmp_path / "m.onnx", **FAST).read_bytes() == BODY


def test_a_complete_file_is_not_fetched_again(artifact_server: ArtifactServer, tmp_path: Path) -> None:
    served = Served(BODY)
    url = artifact_server.serve("m.onnx", served)
    (tmp_path / "m.onnx").write_bytes(BODY)
    download(_artifact(url), tmp_path / "m.onnx", **FAST)
    assert served.requests == []


@pytest.mark.parametrize(
    ("served", "code"),
    [
        (Served(BODY[:-10]), ErrorCode.TRUNCATED),
        (Served(BODY + b"x" * 50_000), ErrorCode.OVERSIZED),
        (Served(BODY + b"x" * 5_000_000, hide_length=True), ErrorCode.OVERSIZED),
        (Served(bytes(len(BODY))), ErrorCode.HASH_MISMATCH),
    ],
    ids=["truncated", "oversized-announced", "oversized-streamed", "hash-mismatch"],
)
def test_refusals(artifact_server: ArtifactServer, tmp_path: Path, served: Served, code: ErrorCode) -> None:
    url = artifact_server.serve("m.onnx", served)
    with pytest.raises(OtaError) as caught:
        download(_artifact(url), tmp_path / "m.onnx", **FAST)
    assert caught.value.code == code
    assert not (tmp_path / "m.onnx").exists()
    part = tmp_path / "m.onnx.part"
    # Never more than the signed length on disk; bad bytes are not kept to resume from.
    assert not part.exists() or (code == ErrorCode.TRUNCATED and part.stat().st_size <= len(BODY))


def test_oversized_stream_is_not_read_past_the_signed_length(artifact_server: ArtifactServer, tmp_path: Path) -> None:
    served = Served(BODY + b"x" * 50_000_000, hide_length=True)
    url = artifact_server.serve("m.onnx", served)
    with pytest.raises(OtaError, match="oversized"):
        download(_artifact(url), tmp_path / "m.onnx", **FAST)
    # The server's one 50 MB write never completed: the client hung up after the signed length and one byte.
    assert served.sent_bytes == 0


@pytest.mark.parametrize(
    "url_of",
    [lambda s: s.url("missing.onnx"), lambda s: "http://127.0.0.1:9/m.onnx"],
    ids=["http-404", "connection-refused"],
)
def test_unreachable_is_download_failed(artifact_server: ArtifactServer, tmp_path: Path, url_of) -> None:
    with pytest.raises(OtaError) as caught:
        download(_artifact(url_of(artifact_server)), tmp_path / "m.onnx", **FAST)
    assert caught.value.code == ErrorCode.DOWNLOAD_FAILED
