"""Validation of a staged model on the device's own golden frames: same detections, fast enough.

Golden frames live on the device (a folder of small PNGs, provisioned with
the box, e.g. frames of its own cameras). The manifest names them and carries
the detections the model produced on them when the fleet built it; the device
runs the staged model on the same pixels and must find the same boxes. A model
that loads but is wrong (a bad conversion, a broken calibration, the wrong
file) is caught here, before it serves.

The contract of a reference: the model's detections at score >= GOLDEN_CONFIDENCE
after class-wise NMS at GOLDEN_NMS_IOU, over all classes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from agent.ota.errors import ErrorCode, OtaError
from agent.ota.manifest import MAX_GOLDEN_BOXES, GoldenFrame, GoldenReference
from engines.detector import Detector
from engines.nms import iou_matrix
from engines.types import Detections

GOLDEN_CONFIDENCE = 0.3
GOLDEN_NMS_IOU = 0.45
FPS_FRAMES = 8


def reference_of(found: Sequence[Detections], names: Sequence[str]) -> GoldenReference:
    """A model's detections on the golden frames `names` (one Detections each, found at GOLDEN_CONFIDENCE and
    GOLDEN_NMS_IOU) as the reference a model update carries and OTA validation checks against."""
    frames = []
    for name, detections in zip(names, found, strict=True):
        boxes = []
        for xyxy, class_id, score in zip(detections.xyxy, detections.class_id, detections.confidence):
            x1, y1, x2, y2 = (round(max(0.0, float(v)), 2) for v in xyxy)
            if x2 > x1 and y2 > y1:
                boxes.append((x1, y1, x2, y2, int(class_id), round(float(score), 4)))
        frames.append(GoldenFrame(frame=name, boxes=boxes[:MAX_GOLDEN_BOXES]))
    return GoldenReference(frames=frames)


def reference_on(model_json: Path, models_dir: Path, golden_dir: Path, names: Sequence[str]) -> GoldenReference:
    """The model's own detections (ONNX Runtime) on the golden frames `names` in `golden_dir`: the reference a
    model update carries. ModelError for the model, ValueError for a frame that is not a readable image."""
    with Detector.open(model_json, models_dir, confidence=GOLDEN_CONFIDENCE, nms_iou=GOLDEN_NMS_IOU) as detector:
        found = []
        for name in names:
            image = cv2.imread(str(golden_dir / name), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{golden_dir / name}: not a readable image: remove it or replace it")
            found.append(detector.detect([image])[0])
    return reference_of(found, names)


def load_golden_frames(golden: GoldenReference, golden_dir: Path) -> list[np.ndarray]:
    """The golden frames as BGR uint8 (H, W, 3), in the manifest's order; golden_mismatch if one is missing."""
    images = []
    for frame in golden.frames:
        image = cv2.imread(str(golden_dir / frame.frame), cv2.IMREAD_COLOR)
        if image is None:
            raise OtaError(ErrorCode.GOLDEN_MISMATCH, f"golden frame {frame.frame!r} is not on this device")
        images.append(image)
    return images


def detector_confidence(golden: GoldenReference) -> float:
    """Threshold to run the staged model at: low enough to see a reference box whose score drifted down."""
    return max(0.01, GOLDEN_CONFIDENCE - golden.score_abs_tol)


def check_golden(detector: Detector, golden: GoldenReference, images: list[np.ndarray]) -> None:
    """Raise OtaError(golden_mismatch) unless the detections on every frame match the reference.

    Every reference box needs its own detection of the same class with
    IoU >= iou_min and a score within score_abs_tol; a detection no
    reference box claims is tolerated only if it is borderline (score below
    GOLDEN_CONFIDENCE + score_abs_tol), since numeric drift can move a box
    across the threshold on either side.
    """
    for frame, image in zip(golden.frames, images):
        (found,) = detector.detect([image])
        problem = _mismatch(found, frame.boxes, golden)
        if problem:
            raise OtaError(ErrorCode.GOLDEN_MISMATCH, f"golden frame {frame.frame!r}: {problem}")


def _mismatch(found: Detections, expected: list[tuple], golden: GoldenReference) -> str:
    claimed = np.zeros(len(found.confidence), dtype=bool)
    for box in sorted(expected, key=lambda b: -b[5]):
        xyxy, class_id, score = np.asarray(box[:4], np.float32), box[4], box[5]
        ious = iou_matrix(xyxy, found.xyxy)[0]
        ok = (
            ~claimed
            & (found.class_id == class_id)
            & (ious >= golden.iou_min)
            & (np.abs(found.confidence - score) <= golden.score_abs_tol)
        )
        if not ok.any():
            return f"no detection matches expected box {list(box)}"
        claimed[np.flatnonzero(ok)[np.argmax(ious[ok])]] = True
    strong = ~claimed & (found.confidence >= GOLDEN_CONFIDENCE + golden.score_abs_tol)
    if strong.any():
        i = int(np.flatnonzero(strong)[0])
        return f"unexpected detection {found.xyxy[i].round(1).tolist()} class {int(found.class_id[i])}"
    return ""


def measure_fps(detector: Detector, images: list[np.ndarray], n_frames: int = FPS_FRAMES) -> float:
    """Frames per second of the staged model, one frame per call as a single camera feeds it (after a warm-up)."""
    detector.detect(images[:1])
    start = time.perf_counter()
    for i in range(n_frames):
        detector.detect([images[i % len(images)]])
    return n_frames / max(time.perf_counter() - start, 1e-9)


def check_fps(detector: Detector, images: list[np.ndarray], fps_floor: float) -> float:
    """Measured fps; OtaError(too_slow) below `fps_floor` (0 disables the check)."""
    fps = measure_fps(detector, images)
    if fps_floor > 0 and fps < fps_floor:
        raise OtaError(ErrorCode.TOO_SLOW, f"{fps:.1f} fps on the golden frames, the floor is {fps_floor:.1f}")
    return fps
