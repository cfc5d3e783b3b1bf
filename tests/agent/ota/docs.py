"""Documents the OTA tests sign and serve: golden frames and their reference detections, model and
zones manifests, and a zones document for the test camera. The device they are applied to is the
real agent's owner of what is live (tests/support/live_agent.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cv2

from agent.ota.golden import reference_on
from tests.agent.ota.manifests import manifest_doc

REPO = Path(__file__).resolve().parents[3]
YOLOX_JSON = REPO / "models" / "yolox_nano.json"
LIGHT_JSON = REPO / "models" / "light_person_detector.json"
CAMERA_ID = "cam1"
GOLDEN_FRAME_INDEXES = (3, 60)


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
    """The reference the fleet signs (as `edge-fleet ota model-manifest` makes it): the model's own detections."""
    return reference_on(model_json, models_dir, golden_dir, names).model_dump(mode="json")


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
    """A valid zones document for the test camera."""
    square = [[0.1, 0.1], [0.6, 0.1], [0.6, 0.7], [0.1, 0.7]]
    zone = {"id": "hall", "camera": CAMERA_ID, "polygon": square, "classes": list(classes), "occupancy": {}}
    return {"version": version, "zones": [zone]}
