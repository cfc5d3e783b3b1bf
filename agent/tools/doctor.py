"""`edge-agent doctor`: is this box ready? One pass/fail line per check, each with a fix hint.

Every check is a small function returning a `CheckResult`, bounded in time
(sockets, MQTT and camera reads all carry timeouts; no subprocess, no D-Bus),
so the doctor cannot hang in front of a technician. The exit code is 0 only
when every line passes.

What "pass" means, line by line:
- config: `load_config` accepts the file (schema, zones, manifest, model file present).
- model: the file's SHA-256 equals the manifest's.
- inference: the configured backend opens the model and its tensors match the
  manifest. On a CPU box with backend onnxruntime that is the supported CPU
  path and passes as "CPU, ONNX Runtime"; with backend tensorrt the
  TensorRT and CUDA bindings must import and see a GPU.
- camera:<id>: the source opens, a frame decodes, and frames arrive at no
  less than 80 % of the nominal rate over `camera_measure_s` (files: decode
  at least as fast as real time).
- broker.connect: TCP, and the TLS handshake with the configured CA, cert and key.
- broker.publish_own / broker.publish_other: see `agent.tools.doctor_broker.check_broker_acl`.
- clock: the kernel says the clock is disciplined (see `check_clock`).
- disk: the state_dir file system can hold the outbox up to its max_bytes.
- state_dir / key_file: writable by this user; the private key is 0600.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime as dt
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2

from agent.core.units import EARLIEST_REAL_TIME_S
from agent.io.gst import codec_from_fourcc
from agent.io.sources import SERVED_NOT_DECODED, cannot_open, capture_timeouts
from agent.settings.camera import CameraConfig, Codec
from agent.settings.config import AgentConfig, ConfigError, load_config
from agent.tools.args import DEFAULT_CONFIG, SERVICE_USER, add_config_argument
from agent.tools.checks import CheckResult, print_report
from agent.tools.doctor_broker import check_broker
from engines.manifest import (
    ModelError,
    load_manifest,
    resolve_model_file,
    verify_sha256,
)

CAMERA_MEASURE_S = 1.5
MIN_FPS_RATIO = 0.8
# FFmpeg reports RTP clock rates (90000) as fps when a stream has no frame rate.
MAX_PLAUSIBLE_FPS = 240.0
# Longest time spent reading out what FFmpeg buffered while opening a live stream.
DRAIN_MAX_S = 3.0
# adjtimex(2) returns TIME_ERROR when STA_UNSYNC is set: nothing disciplines the clock.
_TIME_ERROR = 5
_EARLIEST_PLAUSIBLE = dt.datetime.fromtimestamp(EARLIEST_REAL_TIME_S, dt.timezone.utc)


@dataclass(frozen=True, slots=True)
class CameraProbe:
    """What a short read of a camera showed. fps values are frames per second;
    fourcc is FFmpeg's codec tag as text ('h264', 'hevc', ...); codec, an RTSP camera's as the agent names it
    (`codec_from_fourcc`), for a Jetson's hardware decoder."""

    opened: bool
    error: str = ""
    width: int = 0
    height: int = 0
    nominal_fps: float = 0.0
    measured_fps: float = 0.0
    fourcc: str = ""
    codec: Codec | None = None

    def describe(self) -> str:
        if not self.opened:
            return self.error
        nominal = f"{self.nominal_fps:.2f}" if self.nominal_fps else "unknown"
        rate = f"{self.measured_fps:.2f} fps measured (nominal {nominal})"
        return f"{self.width}x{self.height}, {rate}, codec {self.fourcc or '?'}"


def probe_camera(camera: CameraConfig, measure_s: float = CAMERA_MEASURE_S) -> CameraProbe:
    """Open the camera's url with OpenCV's FFmpeg backend (its open and read timeouts), decode one frame, then
    count frames for `measure_s`; one that does not open says why (`cannot_open`).

    Live streams: FFmpeg's stream probing at open buffers a few seconds of
    video, which then comes back at decode speed; those frames are drained
    first (until a read has to wait for the network), so the rate is the
    camera's, not the buffer's. Files are measured at decode speed.
    """
    url, read_timeout_s = camera.url, camera.read_timeout_s
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, capture_timeouts(camera))
    try:
        if not capture.isOpened():
            return CameraProbe(False, cannot_open(camera))
        ok, image = capture.read()
        if not ok or image is None:
            return CameraProbe(False, f"opened, but no frame decoded within {read_timeout_s:g} s")
        tag = int(capture.get(cv2.CAP_PROP_FOURCC))
        fourcc = "".join(chr((tag >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ")
        nominal = capture.get(cv2.CAP_PROP_FPS) or 0.0
        nominal = nominal if 0 < nominal <= MAX_PLAUSIBLE_FPS else 0.0
        if urlsplit(url).scheme.lower() in ("rtsp", "rtsps"):
            waited_s = 0.5 / nominal if nominal else 0.01
            drain_until = time.monotonic() + DRAIN_MAX_S
            while time.monotonic() < drain_until:
                started = time.monotonic()
                if not capture.grab():
                    return CameraProbe(False, "the stream stopped after its first frame")
                if time.monotonic() - started > waited_s:
                    break
        frames, start = 0, time.monotonic()
        while time.monotonic() - start < measure_s and capture.grab():  # grab: decode, skip the colour conversion
            frames += 1
        elapsed_s = time.monotonic() - start
        return CameraProbe(
            True,
            width=image.shape[1],
            height=image.shape[0],
            nominal_fps=nominal,
            measured_fps=frames / elapsed_s if elapsed_s > 0 else 0.0,
            fourcc=fourcc,
            codec=None if camera.is_file else codec_from_fourcc(fourcc),
        )
    finally:
        capture.release()


def check_camera(camera: CameraConfig, measure_s: float = CAMERA_MEASURE_S) -> CheckResult:
    name = f"camera:{camera.id}"
    probe = probe_camera(camera, measure_s)
    where = camera.redacted_url
    if not probe.opened:
        if camera.is_file:
            hint = f"check that {camera.url} exists and is readable by the service user"
        elif probe.error == SERVED_NOT_DECODED:
            hint = "the agent decodes H.264 and H.265: set the camera to one; on a Jetson, the camera's codec: names it"
        else:
            hint = "correct what it says; a camera behind a firewall also needs RTSP over TCP (554 unless given)"
        return CheckResult(name, False, f"{where}: {probe.error}", hint)
    detail = f"{where}: {probe.describe()}"
    if probe.codec is not None and probe.codec != camera.codec:  # FFmpeg decodes either; NVDEC's pipeline is built for one
        detail += f"; the camera sends {probe.codec} but its codec: says {camera.codec} (set codec: {probe.codec} for a Jetson)"
    if probe.nominal_fps and probe.measured_fps < MIN_FPS_RATIO * probe.nominal_fps:
        hint = (
            "this box decodes the file slower than real time: use replay: fast, or a lighter clip"
            if camera.is_file
            else "frames arrive slower than the camera's nominal rate: check the network (bandwidth, Wi-Fi), "
            "the camera's encoder settings and the CPU load of this box"
        )
        return CheckResult(name, False, detail, hint)
    if probe.measured_fps <= 0:
        return CheckResult(name, False, detail, "no frame after the first: the stream stalls; reboot the camera")
    return CheckResult(name, True, detail)


def check_model(config: AgentConfig) -> CheckResult:
    try:
        manifest = load_manifest(config.model.manifest)
        path = resolve_model_file(manifest, config.models_dir)
        verify_sha256(path, manifest.sha256)
    except ModelError as e:
        fetch = f"edge-agent models fetch --manifest {config.model.manifest} --dest {config.models_dir}"
        hint = f"fetch the model again: {fetch}"
        return CheckResult("model", False, str(e), hint)
    return CheckResult("model", True, f"{path} ({manifest.name}), sha256 matches the manifest")


def _gpu_present() -> bool:
    nodes = ("/dev/nvidia0", "/dev/nvhost-gpu", "/dev/nvgpu/igpu0/ctrl", "/etc/nv_tegra_release")  # JetPack 5, 6
    return any(Path(p).exists() for p in nodes)


def check_inference(config: AgentConfig) -> CheckResult:
    """The configured backend can run the model on this box."""
    if config.model.backend == "tensorrt":
        return _check_tensorrt(config)
    from engines.detector import Detector  # loads onnxruntime: only when the check runs

    try:
        sizes_wh = [c.detect.input_size_wh for c in config.cameras if c.detect.input_size_wh is not None]
        with Detector.open(config.model.manifest, config.models_dir, backend="onnxruntime", sizes_wh=sizes_wh):
            pass
    except (ModelError, ImportError, RuntimeError) as e:
        return CheckResult(
            "inference",
            False,
            f"onnxruntime cannot open the model: {e}",
            "reinstall the agent (pip install --upgrade /opt/edge-agent/src) and fetch the model again; a camera's "
            "input size the model cannot run: remove that camera's detect.input_size_wh",
        )
    import onnxruntime

    detail = f"CPU, ONNX Runtime {onnxruntime.__version__}"
    if _gpu_present():
        detail += "; an NVIDIA GPU is present: model.backend tensorrt would free the CPU"
    return CheckResult("inference", True, detail)


def _check_tensorrt(config: AgentConfig) -> CheckResult:
    from agent.tools.selftest import check_cuda, check_tensorrt  # the bindings, as selftest checks them

    for check in (check_tensorrt(), check_cuda()):
        if not check.ok:
            return CheckResult("inference", False, check.detail, check.hint)
    from engines.manifest import load_manifest, resolve_model_file
    from engines.tensorrt_engine import engine_cache_entry
    from engines.tensorrt_plan import cached_engine_problem

    manifest = load_manifest(config.model.manifest)
    model_path = resolve_model_file(manifest, config.models_dir)
    engine_path, key = engine_cache_entry(model_path, manifest.precision)
    found = f"TensorRT {key.trt_version} on {key.gpu_name} (sm{key.compute_capability[0]}{key.compute_capability[1]})"
    problem = cached_engine_problem(engine_path, key)
    if problem is not None:
        return CheckResult(
            "inference",
            False,
            f"{found}; engine cache {engine_path.name}: {problem}",
            "the agent builds the engine at its first start (minutes on a Jetson): start it once, then run doctor again",
        )
    return CheckResult("inference", True, f"{found}; cached engine {engine_path.name} matches this GPU and model")


def kernel_clock_synchronised() -> bool | None:
    """The kernel's NTP flag (adjtimex, read-only); None where the call is unavailable."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if not hasattr(libc, "adjtimex"):
        return None
    timex = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read, change nothing
    state = libc.adjtimex(timex)
    return None if state < 0 else state != _TIME_ERROR


def check_clock() -> CheckResult:
    """Synchronised clock, from the kernel's own flag.

    `timedatectl show -p NTPSynchronized` reports this same flag but needs
    systemd-timedated over D-Bus, absent in containers and able to stall;
    the broker cannot help (MQTT carries no time). One adjtimex(2) call
    answers at once, on any init system. In a container it reports the
    host's clock, which is the clock the container uses.
    """
    now = dt.datetime.now(dt.timezone.utc)
    hint = (
        "enable time sync (timedatectl set-ntp true, or chrony) and let it reach an NTP server: "
        "events carry timestamps and TLS checks certificate dates"
    )
    if now < _EARLIEST_PLAUSIBLE:
        return CheckResult(
            "clock", False, f"the clock says {now:%Y-%m-%d %H:%M} UTC: the box booted without real time", hint
        )
    synced = kernel_clock_synchronised()
    if synced is None:
        return CheckResult("clock", False, "cannot ask the kernel whether the clock is synchronised", hint)
    if not synced:
        return CheckResult(
            "clock",
            False,
            "the kernel reports the clock unsynchronised (STA_UNSYNC: no NTP or PTP disciplines it)",
            hint,
        )
    return CheckResult("clock", True, f"synchronised (kernel NTP flag), now {now:%Y-%m-%d %H:%M:%S} UTC")


def _outbox_bytes(state_dir: Path) -> int:
    files = [state_dir / f"outbox.sqlite{suffix}" for suffix in ("", "-wal", "-shm")]
    return sum(f.stat().st_size for f in files if f.exists())


def check_disk(config: AgentConfig) -> CheckResult:
    state_dir, cap = config.state_dir, config.outbox.max_bytes
    if not state_dir.is_dir():
        return CheckResult(
            "disk",
            False,
            f"state_dir {state_dir} does not exist",
            f"create it: install -d -o {SERVICE_USER} -g {SERVICE_USER} -m 0750 {state_dir}",
        )
    free = shutil.disk_usage(state_dir).free
    needed = max(0, cap - _outbox_bytes(state_dir))
    detail = (
        f"{free / 2**20:.1f} MiB free on {state_dir}; the outbox may still grow by {needed / 2**20:.1f} MiB "
        f"(outbox.max_bytes {cap / 2**20:.1f} MiB)"
    )
    if free < needed:
        return CheckResult(
            "disk",
            False,
            detail,
            f"free space on the file system of {state_dir}, or lower outbox.max_bytes below {free} bytes",
        )
    return CheckResult("disk", True, detail)


def _cannot_write(folder: Path) -> str | None:
    """Why a file cannot be written (and synced) in `folder` as this user, None if it can. A real write, not
    os.access: a full or read-only file system fails here too."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return str(e.strerror or e)
    return None


def _who() -> str:
    if os.geteuid() == 0:
        return f"root (run as the service user for a real answer: sudo -u {SERVICE_USER} edge-agent doctor)"
    return f"uid {os.geteuid()}"


def check_state_dir(config: AgentConfig) -> CheckResult:
    state_dir = config.state_dir
    problem = _cannot_write(state_dir)
    if problem is not None:
        hint = f"chown -R {SERVICE_USER}:{SERVICE_USER} {state_dir} and check the unit's ReadWritePaths"
        return CheckResult("state_dir", False, f"cannot write in {state_dir} as {_who()}: {problem}", hint)
    return CheckResult("state_dir", True, f"{state_dir} writable as {_who()}")


def check_zones_file(config: AgentConfig) -> CheckResult:
    """The agent rewrites its zones file on a zone-editor save and an OTA zones commit: its folder must take a
    write (a new file is renamed over it)."""
    if config.zones_file is None or (not config.zone_editor.enabled and config.ota is None):
        return CheckResult("zones_file", True, "not rewritten by the agent (no zone editor, no OTA)")
    folder = config.zones_file.parent
    problem = _cannot_write(folder)
    if problem is not None:
        if folder == config.state_dir:
            hint = f"chown {SERVICE_USER}:{SERVICE_USER} {folder} and check the unit's ReadWritePaths"
        else:
            hint = (f"move the zones file into the state dir ({config.state_dir / 'zones.yaml'}, owned by "
                    f"{SERVICE_USER}) and set zones_file to it: the unit lets the agent write only there")  # fmt: skip
        return CheckResult("zones_file", False, f"cannot write in {folder} as {_who()}: {problem}", hint)
    return CheckResult("zones_file", True, f"{folder} writable as {_who()}: zone-editor saves and OTA zones updates")


def check_key_file(config: AgentConfig) -> CheckResult:
    if config.broker.tls is None:
        return CheckResult("key_file", True, "no device key configured (plain MQTT)")
    key = config.broker.tls.key_file
    mode = key.stat().st_mode & 0o777
    if mode & 0o077:
        return CheckResult(
            "key_file", False, f"{key} is mode {mode:04o}: others can read the device key", f"chmod 600 {key}"
        )
    try:
        key.open("rb").close()
    except OSError as e:
        return CheckResult("key_file", False, f"{key}: {e.strerror}", f"chown {SERVICE_USER} {key}")
    return CheckResult("key_file", True, f"{key} is mode {mode:04o}")


def run_checks(config_path: Path, camera_measure_s: float = CAMERA_MEASURE_S) -> list[CheckResult]:
    """Every check for the config at `config_path`, in report order."""
    try:
        config, zones = load_config(config_path)
    except ConfigError as e:
        if not Path(config_path).exists():
            hint = f"give the box's config with --config FILE, or write one: edge-agent provision --config {config_path}"
        else:
            hint = f"correct what is named above, then check: edge-agent check-config --config {config_path}"
        return [CheckResult("config", False, str(e), hint)]
    results = [
        CheckResult(
            "config",
            True,
            f"{config_path}: device {config.device_id}, {len(config.cameras)} camera(s), zones v{zones.version}",
        )
    ]
    model = check_model(config)
    results.append(model)
    results.append(
        check_inference(config)
        if model.ok
        else CheckResult("inference", False, "not checked: the model file is not right", model.hint)
    )
    # All cameras at once, as the agent reads them: the measured rates include the shared CPU.
    with ThreadPoolExecutor(max_workers=len(config.cameras)) as pool:
        results += pool.map(lambda c: check_camera(c, camera_measure_s), config.cameras)
    results += check_broker(config)
    results += [check_clock(), check_disk(config), check_state_dir(config), check_zones_file(config), check_key_file(config)]
    return results


def add_doctor_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `doctor [--config FILE] [--json]`; the handler is the `func` default."""
    p = subparsers.add_parser("doctor", help="check this box: model, cameras, broker, clock, disk, permissions")
    add_config_argument(p, DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument(
        "--camera-seconds", type=float, default=CAMERA_MEASURE_S, help="how long to measure each camera's frame rate"
    )
    p.set_defaults(func=cmd_doctor)
    return p


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the report; 0 when every check passes, 1 otherwise."""
    from agent.io import logs

    logs.configure("warning")  # engine-open chatter would mix with the table (or break --json)
    return print_report(run_checks(args.config, args.camera_seconds), args.json)
