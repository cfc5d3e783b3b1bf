"""fetch_model against real files and a real HTTP server on loopback."""

import functools
import hashlib
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engines.fetch import fetch_model
from engines.manifest import ModelError
from tests.engines.conftest import write_json

MODEL = "yolox_nano.onnx"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served_dir(tmp_path):
    """A temp dir served over HTTP on 127.0.0.1; yields (dir, base url)."""
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def manifest_for(tmp_path, manifests_dir):
    """Writes the yolox manifest with a given url into tmp_path."""

    def write(url: str | None) -> Path:
        data = json.loads((manifests_dir / "yolox_nano.json").read_text()) | {"url": url}
        return write_json(tmp_path / "yolox_nano.json", data)

    return write


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _corrupt_copy(src: Path, dest: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[1000] ^= 0xFF  # same size, different hash
    dest.write_bytes(bytes(data))
    return dest


def test_already_in_place(tmp_path, manifest_for, models_dir):
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    shutil.copy(models_dir / MODEL, dest_dir / MODEL)
    mtime_ns = (dest_dir / MODEL).stat().st_mtime_ns
    path = fetch_model(manifest_for(None), dest_dir, search_dirs=[], url_allowed=False)
    assert path == dest_dir / MODEL and path.stat().st_mtime_ns == mtime_ns


def test_copies_from_first_good_search_dir(tmp_path, manifest_for, models_dir, manifests_dir):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    _corrupt_copy(models_dir / MODEL, bad_dir / MODEL)
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    _corrupt_copy(models_dir / MODEL, dest_dir / MODEL)  # a stale, wrong file in place gets replaced
    path = fetch_model(manifest_for(None), dest_dir, search_dirs=[tmp_path / "missing", bad_dir, models_dir])
    assert _sha256(path) == json.loads((manifests_dir / "yolox_nano.json").read_text())["sha256"]
    assert sorted(p.name for p in dest_dir.iterdir()) == [MODEL]


def test_downloads_from_url(tmp_path, manifest_for, models_dir, served_dir):
    root, base_url = served_dir
    shutil.copy(models_dir / MODEL, root / MODEL)
    dest_dir = tmp_path / "dest"
    path = fetch_model(manifest_for(f"{base_url}/{MODEL}"), dest_dir, search_dirs=[tmp_path / "empty"])
    assert path.read_bytes() == (models_dir / MODEL).read_bytes()
    assert sorted(p.name for p in dest_dir.iterdir()) == [MODEL]


@pytest.mark.parametrize(
    ("served", "message"),
    [
        ("corrupt", "has sha256 [0-9a-f]{64}, expected d39bee"),
        ("too_big", "larger than size_bytes 3713911"),
        ("too_small", "got 100 bytes, expected 3713911"),
        ("missing", "download from .* failed: HTTP Error 404"),
    ],
)
def test_bad_download_leaves_nothing(tmp_path, manifest_for, models_dir, served_dir, served, message):
    root, base_url = served_dir
    original = (models_dir / MODEL).read_bytes()
    if served == "corrupt":
        _corrupt_copy(models_dir / MODEL, root / MODEL)
    elif served == "too_big":
        (root / MODEL).write_bytes(original + b"extra")
    elif served == "too_small":
        (root / MODEL).write_bytes(original[:100])
    dest_dir = tmp_path / "dest"
    with pytest.raises(ModelError, match=f"'{MODEL}'.*{message}"):
        fetch_model(manifest_for(f"{base_url}/{MODEL}"), dest_dir, search_dirs=[])
    assert list(dest_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "url_allowed", "message"),
    [
        (None, True, "the manifest has no url"),
        ("http://127.0.0.1:9/never", False, "downloads are not allowed"),
    ],
)
def test_no_source_left(tmp_path, manifest_for, models_dir, url, url_allowed, message):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    _corrupt_copy(models_dir / MODEL, bad_dir / MODEL)
    with pytest.raises(ModelError, match=f"bad/{MODEL}: wrong sha256.*{message}"):
        fetch_model(manifest_for(url), tmp_path / "dest", search_dirs=[bad_dir], url_allowed=url_allowed)


def test_download_shows_its_progress(tmp_path, manifest_for, models_dir, served_dir, capsys):
    root, base_url = served_dir
    shutil.copy(models_dir / MODEL, root / MODEL)
    mib = f"{(models_dir / MODEL).stat().st_size / 2**20:.1f} MiB"
    fetch_model(manifest_for(f"{base_url}/{MODEL}"), tmp_path / "dest", search_dirs=[], progress=True)
    lines = capsys.readouterr().err.splitlines()  # not a terminal: a line per quarter
    assert lines[0].startswith(f"downloading {MODEL} [") and lines[-1] == f"downloading {MODEL} [{'#' * 30}] {mib}/{mib}"
    assert len(lines) == 5
    fetch_model(manifest_for(None), tmp_path / "dest2", search_dirs=[models_dir])  # progress off: silent
    assert capsys.readouterr().err == ""
