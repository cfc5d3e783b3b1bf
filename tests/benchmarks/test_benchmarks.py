"""Each benchmark script runs briefly as `python -m benchmarks.<name>` and writes a valid result.

These check plumbing, not speed: tiny durations, one stream, a 20-frame clip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.machine import CPU_FLAGS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LIGHT = REPO / "models" / "light_person_detector.json"
MACHINE_KEYS = {"host", "cpu", "load_average_1_5_15", "load_average_at_end", "libraries", "git", "settings"}
RUN_KEYS = {"streams", "end_to_end_ms", "events", "frames", "stages_ms", "decode_probe", "resources"}
PERCENTILE_KEYS = {"n", "p50", "p95", "p99", "max"}
# one health report (every 10 s) is needed for stage timings and drop counts
LIVE_RUN = ["--duration", "9", "--warmup", "2", "--decode-frames", "10"]


def _env(models_dir: Path, media_dir: Path) -> dict[str, str]:
    return os.environ | {"EDGE_AGENT_MODELS_DIR": str(models_dir), "EDGE_AGENT_MEDIA_DIR": str(media_dir)}


def run_script(name: str, args: list[str], models_dir: Path, media_dir: Path, out: Path) -> dict:
    env = _env(models_dir, media_dir)
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args, "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["benchmark"] == name
    assert MACHINE_KEYS <= set(result["machine"])
    assert {"model", "logical_cores", "flags"} <= set(result["machine"]["cpu"])
    with open("/proc/cpuinfo") as cpuinfo:  # the flags as the kernel lists them for the first core
        listed = set(next(line for line in cpuinfo if line.startswith("flags")).partition(":")[2].split())
    assert result["machine"]["cpu"]["flags"] == {flag: flag in listed for flag in CPU_FLAGS}
    return result


def check_live_run(run: dict, streams: int) -> None:
    assert RUN_KEYS <= set(run)
    assert run["streams"] == streams
    assert set(run["end_to_end_ms"]) == PERCENTILE_KEYS
    assert run["events"]["received"] == run["events"]["emitted"]
    assert set(run["stages_ms"]) == {"decode", "preprocess", "inference", "postprocess", "tracking", "rules", "publish"}
    assert 0 <= run["frames"]["dropped"] < run["frames"]["read"]
    assert run["resources"]["rss_mb_peak"] > 0 and run["resources"]["rss_budget_mb"] == 300 + 25 * streams


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Path:
    """The first 20 frames of vtest.avi as MJPEG: enough for a few batches and a tracker."""
    path = tmp_path_factory.mktemp("clip") / "short.avi"
    capture = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(20):
        writer.write(capture.read()[1])
    writer.release()
    capture.release()
    return path


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, short_clip: Path) -> Path:
    """A QDQ light_person_detector, calibrated on two frames: good for plumbing, not for accuracy."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    frames = [cv2.resize(cv2.VideoCapture(str(short_clip)).read()[1], (192, 192))] * 2

    class Reader:
        def __init__(self) -> None:
            self._feeds = iter({"images": f.transpose(2, 0, 1)[None].astype(np.float32)} for f in frames)

        def get_next(self) -> dict | None:
            return next(self._feeds, None)

    out = tmp_path_factory.mktemp("int8") / "light_int8.onnx"
    quantize_static(str(models_dir / "light_person_detector.onnx"), str(out), Reader(), quant_format=QuantFormat.QDQ)
    return out


def test_latency_per_stream_over_rtsp(_gst_rtsp_available, tmp_path, models_dir, media_dir):
    out = tmp_path / "latency.json"
    args = ["--source", "rtsp", "--manifest", str(LIGHT), *LIVE_RUN]
    result = run_script("latency_per_stream", args, models_dir, media_dir, out)
    (run,) = result["results"]["runs"]
    check_live_run(run, 1)
    assert run["decode_probe"]["url"].startswith("rtsp://")
    assert out.with_suffix(".png").stat().st_size > 0


def test_streams_per_box_from_files(tmp_path, models_dir, media_dir):
    out = tmp_path / "streams.json"
    args = ["--source", "file", "--manifest", str(LIGHT), "--max-streams", "1", "--budget-ms", "10000",
            "--mode", "every", "--mode", "fps5-motion-crop", *LIVE_RUN]  # fmt: skip
    result = run_script("streams_per_box", args, models_dir, media_dir, out)
    every, scheduled = result["results"]["configs"]
    for config in (every, scheduled):
        assert config["model"]["precision"] == "fp32" and len(config["model"]["sha256"]) == 64
        check_live_run(config["runs"][0], 1)
        assert config["runs"][0]["events"]["measured"] > 0
        assert config["max_streams"] in (0, 1)
    # health reports the detect rate: every frame in one mode, at most 5 a second in the other
    assert every["runs"][0]["frames"]["detect_fps_mean"] > scheduled["runs"][0]["frames"]["detect_fps_mean"] <= 5.5
    assert out.with_suffix(".png").stat().st_size > 0


def test_streams_per_box_once_plays_the_clip_once_and_reads_the_counts_back(tmp_path, models_dir, media_dir, short_clip):
    out = tmp_path / "once.json"
    args = ["--source", "file", "--once", "--clip", str(short_clip), "--manifest", str(LIGHT), "--max-streams", "1",
            "--budget-ms", "10000", "--mode", "fps5", *LIVE_RUN]  # fmt: skip
    result = run_script("streams_per_box", args, models_dir, media_dir, out)
    (run,) = result["results"]["configs"][0]["runs"]
    assert run["frames"]["processed"] == 20  # the clip's 20 frames once, no loop: the agent stopped at its end
    assert run["events"]["received"] == run["events"]["emitted"] > 0
    assert set(run["counts"]) == {"cam0"}
    assert set(run["counts"]["cam0"]) == {"line_in", "line_out", "wrong_way", "loitering"}


def test_once_needs_files(tmp_path, models_dir, media_dir):
    env = _env(models_dir, media_dir)
    done = subprocess.run([sys.executable, "-m", "benchmarks.streams_per_box", "--source", "rtsp", "--once", "--out",
                           str(tmp_path / "x.json")], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0 and "--once needs --source file" in done.stderr


def test_backends_at_another_input_size(tmp_path, models_dir, media_dir, short_clip):
    out = tmp_path / "backends.json"
    args = ["--clip", str(short_clip), "--size", "416x320", "--sessions", "1", "--sessions", "2"]
    args += ["--batches", "1", "2", "--rounds", "1", "--window", "0.2"]
    result = run_script("backends", args, models_dir, media_dir, out)
    rows = {(r["config"], r["batch"]): r for r in result["results"]["rows"]}
    labels = [f"onnxruntime fp32 416x320 {n} sessions" for n in (1, 2)]
    assert {(label, b) for label in labels for b in (1, 2)} <= set(rows)
    assert all(rows[(label, b)]["frames_per_s"] > 0 for label in labels for b in (1, 2))
    models = result["results"]["models"]
    assert [(models[label]["input_size_wh"], models[label]["sessions"]) for label in labels] == [([416, 320], 1), ([416, 320], 2)]


def test_backends_with_int8(tmp_path, models_dir, media_dir, short_clip, int8_model):
    out = tmp_path / "backends.json"
    args = ["--manifest", str(LIGHT), "--int8", str(int8_model), "--clip", str(short_clip)]
    args += ["--batches", "1", "2", "--rounds", "1", "--window", "0.2"]
    result = run_script("backends", args, models_dir, media_dir, out)
    rows = {(r["config"], r["batch"]): r for r in result["results"]["rows"]}
    assert set(rows) == {(c, b) for c in ("onnxruntime fp32", "onnxruntime int8") for b in (1, 2)}
    assert rows[("onnxruntime fp32", 1)]["speedup_vs_ort_fp32"] == 1.0
    assert all(r["frames_per_s"] > 0 and set(r["batch_ms"]) == PERCENTILE_KEYS for r in rows.values())
    assert result["results"]["models"]["onnxruntime int8"]["precision"] == "int8"


def test_backends_notes_a_missing_int8(tmp_path, models_dir, media_dir, short_clip):
    out = tmp_path / "backends.json"
    args = ["--manifest", str(LIGHT), "--clip", str(short_clip), "--batches", "1", "--rounds", "1", "--window", "0.1"]
    result = run_script("backends", args, models_dir, media_dir, out)
    assert any(n.startswith("ORT INT8 skipped: no --int8") for n in result["results"]["skipped"])


def test_peer_alternates_agent_peer_and_bare(tmp_path, models_dir, media_dir, short_clip):
    out = tmp_path / "peer.json"
    args = ["--manifest", str(LIGHT), "--clip", str(short_clip), "--rounds", "1"]
    result = run_script("peer", args, models_dir, media_dir, out)
    runs = result["results"]["runs"]
    assert set(runs) == {"agent", "peer", "bare"}
    assert all(arm[0]["frames"] == 20 for arm in runs.values())
    assert set(result["results"]["ratios"]) == {
        "agent_over_peer_fps", "agent_over_bare_cpu_per_frame", "agent_over_bare_wall_per_frame"
    }


def test_detect_accuracy_of_one_mode(tmp_path, models_dir, media_dir):
    out = tmp_path / "accuracy.json"
    result = run_script("detect_accuracy", ["--mode", "fps5 416"], models_dir, media_dir, out)
    (mode,) = result["results"]["modes"].values()
    assert result["results"]["ground_truth_line"] == [15, 13]
    assert mode["frames"] == 795 and 0.3 < mode["detected_share"] <= 0.55
    assert mode["line_in"] + mode["line_out"] > 0
    assert result["results"]["ground_truth_events"] == {"mid in": 15, "mid out": 13, "plaza wrong_way": 21, "plaza loitering": 8}
    # most crossings of the run are the truth's own, one by one
    assert mode["vs_truth"]["mid in"]["hits"] >= 10 and mode["vs_truth"]["mid in"]["extra"] <= 3


def test_analytics_cost_replays_the_same_events_every_round(tmp_path, models_dir, media_dir):
    out = tmp_path / "analytics.json"
    args = ["--manifest", str(LIGHT), "--cache", str(tmp_path / "cache"), "--rounds", "2"]
    result = run_script("analytics_cost", args, models_dir, media_dir, out)["results"]
    assert len(result["ms_per_frame"]) == 2 and all(ms > 0 for ms in result["ms_per_frame"])
    assert result["events"] > 100 and len(result["digests"]) == 1  # the cached boxes give the same events


def _benchmark(args: list[str], models_dir: Path, media_dir: Path, **popen: object) -> subprocess.Popen:
    env = _env(models_dir, media_dir)
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env, text=True, **popen)  # type: ignore[call-overload]


@pytest.mark.parametrize(("args", "says"), [
    (["--start", "5", "--max-streams", "4"], "--start must be 1 or more and at most --max-streams"),
    (["--start", "0"], "--start must be 1 or more"),
    (["--max-drop", "1.5"], "--max-drop is a fraction"),
    (["--duration", "0"], "--duration must be above 0"),
    (["--duration", "5", "--warmup", "2"], "--warmup + --duration must exceed 10 s"),
    (["--clip", "/nonexistent/clip.avi"], "clip /nonexistent/clip.avi: no such file"),
    (["--manifest", "models/nonexistent.json"], "models/nonexistent.json: cannot read manifest"),
    (["--backend", "onnxruntim"], "invalid choice: 'onnxruntim'"),
])  # fmt: skip
def test_streams_per_box_refuses_what_would_waste_the_run_before_starting(args, says, tmp_path, models_dir, media_dir):
    done = _benchmark(["benchmarks.streams_per_box", *args, "--out", str(tmp_path / "x.json")], models_dir, media_dir,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    out, err = done.communicate(timeout=60)
    assert done.returncode == 2 and says in err and "Traceback" not in err, err
    assert not (tmp_path / "x.json").exists()


def test_an_out_that_is_a_folder_is_refused_before_the_run(tmp_path, models_dir, media_dir):
    done = _benchmark(["benchmarks.latency_per_stream", "--source", "file", "--out", str(tmp_path)], models_dir,
                      media_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _, err = done.communicate(timeout=60)
    assert done.returncode == 2 and f"--out {tmp_path} is a folder" in err, err


def test_sigterm_stops_the_benchmarks_agent_and_broker_and_removes_its_folder(tmp_path, models_dir, media_dir):
    bench = _benchmark(["benchmarks.latency_per_stream", "--source", "file", "--streams", "1", "--duration", "60",
                        "--warmup", "1", "--out", str(tmp_path / "x.json")], models_dir, media_dir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    children: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(children) < 2:  # the broker and the agent
        time.sleep(0.5)
        found = subprocess.run(["pgrep", "-P", str(bench.pid)], capture_output=True, text=True).stdout.split()
        children = {int(pid) for pid in found}
    assert len(children) >= 2, children
    folders = {Path(arg).parents[1] for pid in children for arg in Path(f"/proc/{pid}/cmdline").read_text().split("\0")
               if arg.startswith(tempfile.gettempdir() + "/bench-")}  # fmt: skip
    assert folders
    bench.terminate()
    assert bench.wait(60) == 128 + signal.SIGTERM
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(folder.exists() for folder in folders)
