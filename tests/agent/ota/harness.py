"""A TEST HARNESS, not the full agent: an `AgentControl` over real detectors and a real frame loop.

`HarnessAgent` reads vtest.avi with the real CameraReader (looped, "fast"
replay: the reader blocks instead of dropping, so any lost frame shows as a gap
in `seq`), runs the real Detector on every frame in its own thread, and applies
model and zones swaps at frame boundaries, the way Pipeline.swap_zones does.
The same swaps on the real agent process are in tests/integration/test_ota_agent.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from agent.settings.config import AgentConfig, check_zones
from agent.ota.control import HealthSample, ModelRef
from agent.ota.golden import GOLDEN_CONFIDENCE, GOLDEN_NMS_IOU
from agent.io.sources import CameraConfig, CameraReader
from agent.settings.zones import ZonesDoc
from engines.detector import Detector
from engines.manifest import ModelManifest, load_manifest
from tests.agent.ota.manifests import DEVICE_ID, manifest_doc

REPO = Path(__file__).resolve().parents[3]
YOLOX_JSON = REPO / "models" / "yolox_nano.json"
LIGHT_JSON = REPO / "models" / "light_person_detector.json"
CAMERA_ID = "cam1"
SWITCH_TIMEOUT_S = 30.0
GOLDEN_FRAME_INDEXES = (3, 60)


@dataclass(frozen=True, slots=True)
class Processed:
    seq: int
    model_sha256: str
    detections: int


class HarnessAgent:
    """AgentControl for tests. `bad_sha256`: frames run by that model count as errors (a model that fails live)."""

    def __init__(
        self,
        clip: Path,
        model: ModelRef,
        zones: ZonesDoc,
        run_detector: bool = True,
        frame_interval_s: float = 0.02,
        bad_sha256: str = "",
    ) -> None:
        self.config = AgentConfig(
            device_id=DEVICE_ID,
            site="site",
            model={"manifest": model.manifest_path},
            models_dir=model.models_dir,
            cameras=[{"id": CAMERA_ID, "url": str(clip)}],
        )
        self.zones = zones
        self.config_patch: dict[str, Any] = {}
        self.processed: list[Processed] = []
        self.status_publications = 0
        self._run_detector = run_detector
        self._interval_s = frame_interval_s
        self._bad_sha256 = bad_sha256
        self._errors = 0
        self._manifest, self._detector = self._open(model)
        self._pending: tuple[ModelManifest, Detector] | None = None
        self._applied = threading.Condition()
        self._stop = threading.Event()
        self._reader = CameraReader(CameraConfig(id=CAMERA_ID, url=str(clip), replay="fast", loop=True))
        self._thread = threading.Thread(target=self._loop, name="harness-frames", daemon=True)

    def __enter__(self) -> HarnessAgent:
        self._reader.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._reader.close()
        self._thread.join(5)
        self._detector.close()

    def _open(self, ref: ModelRef) -> tuple[ModelManifest, Detector]:
        return load_manifest(ref.manifest_path), Detector.open(ref.manifest_path, ref.models_dir)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._applied:
                if self._pending is not None:  # the frame boundary: swap between two frames
                    old = self._detector
                    self._manifest, self._detector = self._pending
                    self._pending = None
                    old.close()
                    self._applied.notify_all()
            frame = self._reader.queue.get(timeout_s=0.05)
            if frame is None:
                continue
            found = self._detector.detect([frame.image])[0] if self._run_detector else None
            sha = self._detector.model_sha256
            self.processed.append(Processed(frame.seq, sha, 0 if found is None else len(found.confidence)))
            if sha == self._bad_sha256:
                self._errors += 1
            time.sleep(self._interval_s)

    # --- AgentControl ---

    def check_model(self, manifest: ModelManifest) -> None:
        check_zones(self.config, self.zones, manifest.classes, manifest.class_map, where="live zones")

    def check_zones(self, zones: ZonesDoc) -> None:
        check_zones(self.config, zones, self._manifest.classes, self._manifest.class_map, where="ota zones")

    def check_config(self, patch: dict[str, Any]) -> None:
        AgentConfig.model_validate({**self.config.model_dump(), **patch})

    def switch_model(self, model: ModelRef) -> None:
        new = self._open(model)
        with self._applied:
            self._pending = new
            if not self._applied.wait_for(lambda: self._pending is None, SWITCH_TIMEOUT_S):
                self._pending = None
                new[1].close()
                raise TimeoutError("the frame loop did not reach a frame boundary")

    def switch_zones(self, zones: ZonesDoc) -> None:
        self.check_zones(zones)
        self.zones = zones

    def switch_config(self, patch: dict[str, Any]) -> None:
        self.config_patch = patch

    def live_model_sha256(self) -> str:
        return self._detector.model_sha256

    def live_zones_version(self) -> int:
        return self.zones.version

    def health(self) -> HealthSample:
        return HealthSample(frames=len(self.processed), errors=self._errors)

    def publish_status(self) -> None:
        self.status_publications += 1


def write_golden_frames(clip: Path, folder: Path) -> list[str]:
    """Frames GOLDEN_FRAME_INDEXES of `clip` as PNGs in `folder`, as a technician provisions them."""
    folder.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(clip))
    names = []
    for index in range(max(GOLDEN_FRAME_INDEXES) + 1):
        ok, image = capture.read()
        assert ok, f"{clip} has fewer than {index + 1} frames"
        if index in GOLDEN_FRAME_INDEXES:
            names.append(f"vtest_{index:04d}.png")
            cv2.imwrite(str(folder / names[-1]), image)
    capture.release()
    return names


def golden_reference(model_json: Path, models_dir: Path, golden_dir: Path, names: list[str]) -> dict[str, Any]:
    """The reference the fleet's build machine signs: the model's own detections on the golden frames."""
    frames = []
    with Detector.open(model_json, models_dir, confidence=GOLDEN_CONFIDENCE, nms_iou=GOLDEN_NMS_IOU) as detector:
        for name in names:
            (found,) = detector.detect([cv2.imread(str(golden_dir / name))])
            boxes = [
                [*map(float, xyxy.round(2)), int(c), round(float(s), 4)]
                for xyxy, c, s in zip(found.xyxy, found.class_id, found.confidence)
            ]
            frames.append({"frame": name, "boxes": boxes})
    return {"frames": frames, "iou_min": 0.5, "score_abs_tol": 0.1}


def model_manifest_doc(
    model_json: Path, url: str, golden: dict[str, Any], version: int, body: bytes | None = None, **overrides: Any
) -> dict[str, Any]:
    """A model manifest for `model_json`'s model served at `url` (`body`: other bytes to sign instead)."""
    model = json.loads(model_json.read_text())
    if body is not None:
        model.update(sha256=hashlib.sha256(body).hexdigest(), size_bytes=len(body))
    artifact = {"name": model["file"], "url": url, "sha256": model["sha256"], "size_bytes": model["size_bytes"]}
    payload = {"kind": "model", "artifacts": [artifact], "model": model, "calibration_report": {}, "golden": golden}
    return manifest_doc("model", version=version, payload=payload, **overrides)


def zones_manifest_doc(zones: dict[str, Any], version: int, **overrides: Any) -> dict[str, Any]:
    return manifest_doc("zones", version=version, payload={"kind": "zones", "zones": zones}, **overrides)


def zones_doc(version: int, classes: tuple[str, ...] = ("person",)) -> dict[str, Any]:
    """A valid zones document for the harness camera."""
    square = [[0.1, 0.1], [0.6, 0.1], [0.6, 0.7], [0.1, 0.7]]
    zone = {"id": "hall", "camera": CAMERA_ID, "polygon": square, "classes": list(classes), "occupancy": {}}
    return {"version": version, "zones": [zone]}
