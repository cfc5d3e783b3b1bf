"""`edge-agent selftest`: its pure rules on tables, and one real run on this box with the vtest
example config. Here TensorRT and cuda-python are absent (no GPU, and TensorRT cannot be
installed), so the real run must say exactly that and still run everything else: the
interpreter, the camera through the agent's own reader, ONNX Runtime on the golden frames.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from agent.settings.camera import CameraConfig
from agent.tools.cli import main
from agent.tools.selftest import (
    check_cuda,
    check_gstreamer,
    check_python,
    cuda_problem,
    read_camera,
    run_selftest,
    venv_sees_system_packages,
    version_text,
)
from testbed.services import free_port
from tests.conftest import REPO

LINES = ["python", "tensorrt", "cuda", "gstreamer", "camera:plaza", "onnxruntime", "engine", "golden", "speed"]
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_cuda_versions():
    assert version_text(12060) == "12.6" and version_text(13000) == "13.0"
    assert cuda_problem(driver=12060, runtime=12090) is None  # minor version compatibility within a major
    assert cuda_problem(driver=12060, runtime=13000) == "the driver supports CUDA 12.6, cuda-python is built for CUDA 13.0"


@pytest.mark.parametrize(
    ("driver", "runtime_version", "says"),
    [((35, 0), (0, 12060), "no CUDA driver answers"), ((0, 12060), (1, 0), "cuda-python cannot tell its CUDA version")],
    ids=["no driver", "runtime error"],
)
def test_cuda_errors_are_said_not_taken_for_version_0(driver, runtime_version, says, monkeypatch):
    """FAKE cuda.bindings.runtime (no GPU or driver here): the error codes a box without a working driver gives
    (35: cudaErrorInsufficientDriver); the real call runs in the selftest on a Jetson."""
    runtime = types.SimpleNamespace(cudaDriverGetVersion=lambda: driver, cudaRuntimeGetVersion=lambda: runtime_version)
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = runtime
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", runtime)
    result = check_cuda()
    assert not result.ok and result.detail.startswith(says) and "CUDA 0.0" not in result.detail


@pytest.mark.integration
def test_a_camera_without_frames_says_why() -> None:
    port = free_port()  # nothing listens there
    line, frames = read_camera(CameraConfig(id="gate", url=f"rtsp://127.0.0.1:{port}/cam", reconnect_min_s=5.0), 1.0)
    assert not line.ok and frames == []
    assert line.detail == (f"ffmpeg: rtsp://127.0.0.1:{port}/cam: cannot open source: nothing listens at "
                           f"127.0.0.1:{port} (connection refused): check the address, the port, and that the camera is on")


def test_venv_must_see_the_system_packages_on_a_jetson(tmp_path: Path):
    base, venv = tmp_path / "usr", tmp_path / "venv"
    venv.mkdir()
    assert venv_sees_system_packages(base, base)  # no venv at all
    assert not venv_sees_system_packages(venv, base)  # a venv without pyvenv.cfg is unreadable: no
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    assert not venv_sees_system_packages(venv, base)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.10.12\n")
    assert venv_sees_system_packages(venv, base)


@pytest.mark.parametrize(
    ("version", "on_jetson", "system_packages", "ok", "says"),
    [
        ((3, 10, 12), True, True, True, "Python 3.10.12"),
        ((3, 13, 1), False, False, True, "Python 3.13.1"),
        ((3, 9, 18), False, True, False, "Python 3.9.18"),
        ((3, 10, 12), True, False, False, "hides JetPack's TensorRT and OpenCV"),
    ],
)
def test_check_python(version, on_jetson, system_packages, ok, says):
    result = check_python(version, on_jetson, system_packages)
    assert result.ok is ok and says in result.detail and (ok or result.hint)


@pytest.mark.parametrize(
    ("on_jetson", "has_gst", "missing", "ok", "says"),
    [
        (False, False, [], True, "not a Jetson"),
        (True, False, [], False, "OpenCV is built without GStreamer"),
        (True, True, ["nvv4l2decoder"], False, "GStreamer has no nvv4l2decoder"),
        (True, True, [], True, "nvv4l2decoder, nvvidconv present"),
    ],
)
def test_check_gstreamer(on_jetson, has_gst, missing, ok, says):
    result = check_gstreamer(on_jetson, has_gst, missing)
    assert result.ok is ok and says in result.detail


@pytest.fixture
def vtest_env(monkeypatch, models_dir, media_dir, tmp_path):
    monkeypatch.setenv("EDGE_AGENT_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("EDGE_AGENT_MEDIA_DIR", str(media_dir))
    monkeypatch.setenv("EDGE_AGENT_STATE_DIR", str(tmp_path / "state"))
    return REPO / "examples" / "vtest.yaml"


@pytest.mark.integration
@pytest.mark.skipif(HAS_TENSORRT, reason="this box has TensorRT: test_tensorrt_engine.py covers the GPU path")
def test_real_run_reports_tensorrt_absent_and_runs_the_rest(vtest_env):
    results = {r.name: r for r in run_selftest(vtest_env, camera_seconds=1.0)}
    assert list(results) == LINES
    assert not results["tensorrt"].ok and results["tensorrt"].detail == "TensorRT is absent: No module named 'tensorrt'"
    assert "apt install python3-libnvinfer" in results["tensorrt"].hint
    for name in ("tensorrt", "cuda"):  # the example runs on ONNX Runtime: the hints say it needs neither
        assert results[name].hint.startswith("this config runs on ONNX Runtime (model.backend: onnxruntime), which "
                                             "needs neither: edge-agent doctor checks the box as configured; ")
    assert not results["cuda"].ok and "cuda-python (cuda.bindings, >= 12.6.2) is absent" in results["cuda"].detail
    assert results["python"].ok and results["gstreamer"].ok  # not a Jetson: FFmpeg decodes, as the agent does
    assert results["camera:plaza"].ok and results["camera:plaza"].detail.startswith("ffmpeg: ")
    assert results["onnxruntime"].ok and "detections on 2 frames" in results["onnxruntime"].detail
    for name in ("engine", "golden", "speed"):
        assert not results[name].ok and results[name].detail.startswith("not run:")


@pytest.mark.integration
@pytest.mark.skipif(HAS_TENSORRT, reason="this box has TensorRT: test_tensorrt_engine.py covers the GPU path")
def test_cli_json_and_exit_code(vtest_env, capsys):
    assert main(["selftest", "--config", str(vtest_env), "--json", "--camera-seconds", "0.5"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and [c["name"] for c in report["checks"]] == LINES
    assert {c["name"] for c in report["checks"] if not c["ok"]} == {"tensorrt", "cuda", "engine", "golden", "speed"}
