"""`edge-agent selftest`: the GPU path of this box, end to end, for a technician on a real Jetson.

One line per check, each with a fix hint when it fails (the doctor's table, or `--json`);
the exit code is 0 only when every line passes:
- python: the interpreter (>= 3.10; in a venv on a Jetson, one that sees the system's
  packages, where JetPack's TensorRT and OpenCV live);
- tensorrt: NVIDIA's bindings import and their version is supported (10.x or 11.x);
- cuda: cuda-python's runtime (`cuda.bindings`) sees a GPU through a driver of its CUDA major;
- gstreamer: on a Jetson, OpenCV has GStreamer and the NVDEC decoder and hardware converter
  (nvv4l2decoder, nvvidconv) exist;
- camera:<id>: a few seconds decoded through the pipeline the agent chooses (agent.io.sources);
- onnxruntime: the configured model through ONNX Runtime on the golden frames: the reference;
- engine: the TensorRT engine of the configured model, loaded from its cache or built (timed);
- golden: the same frames through TensorRT give the same detections as ONNX Runtime, by the
  rule OTA validation uses (agent.ota.golden.check_golden: class, IoU, score);
- speed: frames per second of both, one frame per call; TensorRT must not be the slower.
Golden frames: the PNGs of `ota.golden_dir` when OTA is configured, else frames of the cameras.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agent.tools.args import DEFAULT_CONFIG, SERVICE_USER, add_config_argument
from agent.tools.checks import CheckResult, print_report

if TYPE_CHECKING:
    from agent.settings.camera import CameraConfig
    from agent.settings.config import AgentConfig

CAMERA_SECONDS = 3.0
GOLDEN_FRAMES_PER_CAMERA = 2
NVIDIA_ELEMENTS = ("nvv4l2decoder", "nvvidconv")
_TRT_HINT = (
    "Jetson: JetPack's TensorRT (apt install python3-libnvinfer) in a venv made with --system-site-packages "
    "(deploy/install.sh); x86: pip install '.[tensorrt]' and the NVIDIA driver"
)
# before the tensorrt and cuda lines' hints, by the config's model.backend
_BACKEND_HINTS = {
    "onnxruntime": "this config runs on ONNX Runtime (model.backend: onnxruntime), which needs neither: "
    "edge-agent doctor checks the box as configured; for the GPU path, ",
    "tensorrt": "or run on the CPU (model.backend: onnxruntime); for this config, ",
}
_CUDA_HINT = (
    "install the cuda-python matching the box's CUDA in the venv (JetPack 6: 'cuda-python>=12.6.2,<12.7', "
    "JetPack 7: 13.x; deploy/install.sh does it), check the driver (nvidia-smi / tegrastats) and that the "
    "service user is in the video and render groups"
)


def version_text(cuda_version: int) -> str:
    """CUDA's integer version (12060) as text (12.6)."""
    return f"{cuda_version // 1000}.{cuda_version % 1000 // 10}"


def venv_sees_system_packages(prefix: Path, base_prefix: Path) -> bool:
    """True outside a venv, or in one made with --system-site-packages (its pyvenv.cfg says so)."""
    if prefix == base_prefix:
        return True
    try:
        lines = (prefix / "pyvenv.cfg").read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    settings = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in lines)}
    return settings.get("include-system-site-packages", "false").lower() == "true"


def check_python(version: tuple[int, ...], on_jetson: bool, sees_system_packages: bool) -> CheckResult:
    detail = f"Python {'.'.join(map(str, version[:3]))} ({sys.executable})"
    if tuple(version[:2]) < (3, 10):
        return CheckResult("python", False, detail, "the agent needs Python >= 3.10 (JetPack 6: /usr/bin/python3.10)")
    if on_jetson and not sees_system_packages:
        return CheckResult(
            "python", False, f"{detail}: a venv without the system site packages hides JetPack's TensorRT and OpenCV",
            "recreate the venv with --system-site-packages (deploy/install.sh does)",
        )  # fmt: skip
    return CheckResult("python", True, detail)


def check_tensorrt() -> CheckResult:
    from engines.tensorrt_plan import SUPPORTED_TRT_MAJORS, trt_major

    try:
        import tensorrt as trt
    except ImportError as exc:
        return CheckResult("tensorrt", False, f"TensorRT is absent: {exc}", _TRT_HINT)
    version = getattr(trt, "__version__", None)
    if version is None:  # e.g. tensorrt-stubs installed without TensorRT: a folder of .pyi files
        return CheckResult("tensorrt", False, f"{trt.__path__} is not NVIDIA's TensorRT (no version)", _TRT_HINT)
    if trt_major(version) not in SUPPORTED_TRT_MAJORS:
        return CheckResult("tensorrt", False, f"TensorRT {version} is not supported (10.x or 11.x)", _TRT_HINT)
    return CheckResult("tensorrt", True, f"TensorRT {version}")


def cuda_problem(driver: int, runtime: int) -> str | None:
    """Why cuda-python's runtime cannot use this driver (a CUDA major newer than the driver's), or None."""
    if driver // 1000 < runtime // 1000:
        return f"the driver supports CUDA {version_text(driver)}, cuda-python is built for CUDA {version_text(runtime)}"
    return None


def check_cuda() -> CheckResult:
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        return CheckResult("cuda", False, f"cuda-python (cuda.bindings, >= 12.6.2) is absent: {exc}", _CUDA_HINT)
    err, driver = runtime.cudaDriverGetVersion()
    if int(err) != 0 or int(driver) == 0:  # 0: no driver loaded
        return CheckResult("cuda", False, f"no CUDA driver answers ({err!r})", _CUDA_HINT)
    err, built_for = runtime.cudaRuntimeGetVersion()
    if int(err) != 0:
        return CheckResult("cuda", False, f"cuda-python cannot tell its CUDA version ({err!r})", _CUDA_HINT)
    problem = cuda_problem(int(driver), int(built_for))
    if problem is not None:
        return CheckResult("cuda", False, problem, _CUDA_HINT)
    err, count = runtime.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return CheckResult("cuda", False, f"CUDA sees no GPU ({err!r})", _CUDA_HINT)
    detail = f"{count} GPU(s), driver CUDA {version_text(int(driver))}, cuda-python CUDA {version_text(int(built_for))}"
    return CheckResult("cuda", True, detail)


def gst_element_exists(name: str) -> bool:
    """Whether GStreamer has the element `name` (gst-inspect-1.0 --exists; False without GStreamer's tools)."""
    try:
        return subprocess.run(["gst-inspect-1.0", "--exists", name], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_gstreamer(on_jetson: bool, has_gst: bool, missing_elements: list[str]) -> CheckResult:
    if not on_jetson:
        return CheckResult("gstreamer", True, "not a Jetson: cameras are decoded by FFmpeg (NVDEC is used on Jetsons)")
    if not has_gst:
        return CheckResult(
            "gstreamer", False, "OpenCV is built without GStreamer (a pip wheel?): RTSP would be decoded on the CPU",
            "use JetPack's OpenCV: pip uninstall opencv-python-headless in the venv, which must see the system "
            "site packages (deploy/install.sh)",
        )  # fmt: skip
    if missing_elements:
        return CheckResult(
            "gstreamer", False, f"GStreamer has no {', '.join(missing_elements)}: no hardware decode",
            "install JetPack's GStreamer plugins: apt install nvidia-l4t-gstreamer",
        )  # fmt: skip
    return CheckResult("gstreamer", True, f"OpenCV with GStreamer; {', '.join(NVIDIA_ELEMENTS)} present")


def read_camera(camera: CameraConfig, seconds: float) -> tuple[CheckResult, list[np.ndarray]]:
    """Decode `seconds` of `camera` through the agent's own reader; the line and a few frames."""
    from agent.io.sources import CameraReader

    frames, kept, offline = 0, [], []

    def on_status(_camera_id: str, state: str, detail: str) -> None:
        if state == "offline":
            offline.append(detail)

    start = time.monotonic()
    with CameraReader(camera, on_status) as reader:
        while time.monotonic() - start < seconds and not (reader.finished and not len(reader.queue)):
            frame = reader.queue.get(timeout_s=0.5)
            if frame is None:
                continue
            frames += 1
            if len(kept) < GOLDEN_FRAMES_PER_CAMERA and frames % 10 == 1:
                kept.append(frame.image)
        backend = reader.backend
    elapsed = time.monotonic() - start
    name = f"camera:{camera.id}"
    if not frames:
        why = offline[-1] if offline else f"no frame in {seconds:g} s"
        return CheckResult(name, False, f"{backend}: {camera.redacted_url}: {why}",
                           "correct what it says; edge-agent doctor checks the camera further"), kept  # fmt: skip
    height, width = kept[0].shape[:2]
    detail = f"{backend}: {frames} frames of {width}x{height} in {elapsed:.1f} s ({frames / elapsed:.1f} fps)"
    return CheckResult(name, True, detail), kept


def check_models(config: AgentConfig, images: list[np.ndarray], gpu_ready: bool) -> list[CheckResult]:
    """onnxruntime, engine, golden and speed lines for the configured model on `images`."""
    from agent.ota.errors import OtaError
    from agent.ota.golden import (
        GOLDEN_CONFIDENCE,
        GOLDEN_NMS_IOU,
        check_golden,
        detector_confidence,
        measure_fps,
        reference_of,
    )
    from engines.detector import Detector
    from engines.manifest import ModelError, load_manifest, resolve_model_file
    from engines.tensorrt_engine import engine_cache_entry
    from engines.tensorrt_plan import cached_engine_problem

    if not images:
        hint = "give the config an ota.golden_dir of PNG frames, or a camera that decodes"
        return [CheckResult(n, False, "no golden frames", hint) for n in ("onnxruntime", "engine", "golden", "speed")]
    manifest_path, models_dir = config.model.manifest, config.models_dir
    try:
        with Detector.open(manifest_path, models_dir, confidence=GOLDEN_CONFIDENCE, nms_iou=GOLDEN_NMS_IOU) as ort:
            reference = reference_of(ort.detect(images), [f"frame-{i:02d}.png" for i in range(len(images))])
            ort_fps = measure_fps(ort, images)
    except ModelError as exc:
        return [CheckResult(n, False, str(exc), "run edge-agent doctor") for n in ("onnxruntime", "engine", "golden", "speed")]
    boxes = sum(len(f.boxes) for f in reference.frames)
    results = [CheckResult("onnxruntime", True, f"reference: {boxes} detections on {len(images)} frames, {ort_fps:.1f} fps")]
    if not gpu_ready:
        detail, hint = "not run: the tensorrt and cuda lines must pass first", "fix the tensorrt and cuda lines"
        return results + [CheckResult(n, False, detail, hint) for n in ("engine", "golden", "speed")]
    manifest = load_manifest(manifest_path)
    engine_path, key = engine_cache_entry(resolve_model_file(manifest, models_dir), manifest.precision)
    problem = cached_engine_problem(engine_path, key)
    start = time.monotonic()
    try:
        trt = Detector.open(manifest_path, models_dir, backend="tensorrt", confidence=detector_confidence(reference))
    except (ModelError, RuntimeError, OSError) as exc:
        hint = (
            f"run selftest as the service's user (sudo -u {SERVICE_USER} ...), who owns {engine_path.parent}"
            if isinstance(exc, PermissionError)
            else "see the error: a manifest whose precision disagrees with its graph, or a GPU out of memory"
        )
        return results + [CheckResult("engine", False, str(exc), hint)] + [
            CheckResult(n, False, "not run: no engine", hint) for n in ("golden", "speed")]  # fmt: skip
    with trt:
        how = "loaded from its cache" if problem is None else f"built ({problem})"
        results.append(CheckResult(
            "engine", True, f"{manifest.name} {manifest.precision}, {how} in {time.monotonic() - start:.1f} s, "
            f"max batch {trt.max_batch}: {engine_path}",
        ))  # fmt: skip
        try:
            check_golden(trt, reference, images)
            results.append(CheckResult("golden", True, f"TensorRT finds ONNX Runtime's {boxes} detections"))
        except OtaError as exc:
            results.append(CheckResult(
                "golden", False, exc.message,
                "a wrong engine or model: delete the engine cache and run selftest again; if it persists, the "
                "model does not survive TensorRT (calibrate again: edge-agent calibrate)",
            ))  # fmt: skip
        trt_fps = measure_fps(trt, images)
    speed = f"TensorRT {trt_fps:.1f} fps, ONNX Runtime {ort_fps:.1f} fps (one frame per call)"
    if trt_fps < ort_fps:
        return results + [CheckResult("speed", False, speed, "check the power mode (nvpmodel -q, jetson_clocks)")]
    return results + [CheckResult("speed", True, speed)]


def run_selftest(config_path: Path, camera_seconds: float = CAMERA_SECONDS) -> list[CheckResult]:
    """Every line for the config at `config_path`, in report order."""
    from agent.io.gst import is_jetson, opencv_has_gstreamer
    from agent.settings.config import ConfigError, load_config

    try:
        config, _ = load_config(config_path)
    except ConfigError as exc:
        return [CheckResult("config", False, str(exc), f"fix the file, then: edge-agent check-config {config_path}")]
    on_jetson = is_jetson()
    before = _BACKEND_HINTS[config.model.backend]
    tensorrt, cuda = (r if r.ok else replace(r, hint=before + r.hint) for r in (check_tensorrt(), check_cuda()))
    has_gst = opencv_has_gstreamer()
    missing = [e for e in NVIDIA_ELEMENTS if not gst_element_exists(e)] if on_jetson and has_gst else []
    python = check_python(sys.version_info, on_jetson, venv_sees_system_packages(Path(sys.prefix), Path(sys.base_prefix)))
    results = [python, tensorrt, cuda, check_gstreamer(on_jetson, has_gst, missing)]
    images: list[np.ndarray] = []
    for camera in config.cameras:
        line, frames = read_camera(camera, camera_seconds)
        results.append(line)
        images += frames
    return results + check_models(config, _golden_pngs(config) or images, tensorrt.ok and cuda.ok)


def _golden_pngs(config: AgentConfig) -> list[np.ndarray]:
    """The frames of ota.golden_dir (the device's own golden frames), when OTA is configured."""
    import cv2

    paths = sorted(config.ota.golden_dir.glob("*.png")) if config.ota is not None else []
    return [image for image in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths) if image is not None]


def add_selftest_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `selftest [--config FILE] [--json] [--camera-seconds S]`; the handler is the `func` default."""
    p = subparsers.add_parser(
        "selftest", help="check the GPU path: Python, TensorRT, CUDA, NVDEC, the engine against ONNX Runtime, cameras"
    )
    add_config_argument(p, DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--camera-seconds", type=float, default=CAMERA_SECONDS, help="how long to decode each camera")
    p.set_defaults(func=cmd_selftest)
    return p


def cmd_selftest(args: argparse.Namespace) -> int:
    """Print the report; 0 when every line passes, 1 otherwise."""
    from agent.io import logs

    logs.configure("error")  # engine chatter and the cameras' warnings (their lines say why) would mix with the table
    return print_report(run_selftest(args.config, args.camera_seconds), args.json)
