"""The peer: the same job written as a typical user would, from common open-source pieces.

Count the persons inside a polygon on every frame of a clip and note each
change: plain OpenCV reading, ONNX Runtime FP32 with default session options,
the YOLOX demo's pre/post-processing, supervision's ByteTrack and PolygonZone.
Deliberately nothing of the agent's: it is the baseline the agent is compared to.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import supervision as sv

STRIDES = (8, 16, 32)


def preprocess(image: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """YOLOX demo's `preproc`: letterbox to the top-left on a 114 canvas, HWC -> CHW float32."""
    padded = np.full((*size_hw, 3), 114, dtype=np.uint8)
    ratio = min(size_hw[0] / image.shape[0], size_hw[1] / image.shape[1])
    resized = cv2.resize(image, (int(image.shape[1] * ratio), int(image.shape[0] * ratio)))
    padded[: resized.shape[0], : resized.shape[1]] = resized
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32), ratio


def decode(output: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """YOLOX demo's `demo_postprocess`: grid offsets and log sizes -> xywh in input pixels."""
    grids, strides = [], []
    for stride in STRIDES:
        h, w = size_hw[0] // stride, size_hw[1] // stride
        xv, yv = np.meshgrid(np.arange(w), np.arange(h))
        grids.append(np.stack((xv, yv), 2).reshape(1, -1, 2))
        strides.append(np.full((1, h * w, 1), stride))
    grid, stride = np.concatenate(grids, 1), np.concatenate(strides, 1)
    output[..., :2] = (output[..., :2] + grid) * stride
    output[..., 2:4] = np.exp(output[..., 2:4]) * stride
    return output


def to_detections(pred: np.ndarray, ratio: float, confidence: float, nms_iou: float) -> sv.Detections:
    """One image's rows (x, y, w, h, obj, class scores...) -> supervision Detections of persons."""
    scores = pred[:, 4:5] * pred[:, 5:]
    class_id = scores.argmax(1)
    score = scores[np.arange(len(scores)), class_id]
    keep = score > confidence
    xywh = pred[keep, :4]
    xyxy = np.c_[xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2] / ratio
    detections = sv.Detections(xyxy=xyxy.astype(np.float32), confidence=score[keep], class_id=class_id[keep])
    return detections[detections.class_id == 0].with_nms(threshold=nms_iou)


def count_in_zone(clip: Path, model: Path, polygon_norm: list, confidence: float = 0.3, nms_iou: float = 0.45) -> dict:
    """Run the job over the whole clip; returns the frames read and the count changes noted."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    size_hw = (inp.shape[2], inp.shape[3])
    capture = cv2.VideoCapture(str(clip))
    width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    zone = sv.PolygonZone(polygon=(np.asarray(polygon_norm) * [width, height]).astype(int))
    with warnings.catch_warnings():  # sv.ByteTrack is deprecated since 0.28 but still the one users know
        warnings.simplefilter("ignore")
        tracker = sv.ByteTrack(frame_rate=capture.get(cv2.CAP_PROP_FPS) or 30)
    frames, last, changes = 0, 0, []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        blob, ratio = preprocess(frame, size_hw)
        output = session.run(None, {inp.name: blob[None]})[0]
        detections = to_detections(decode(output, size_hw)[0], ratio, confidence, nms_iou)
        tracked = tracker.update_with_detections(detections)
        zone.trigger(tracked)
        if zone.current_count != last:
            changes.append(json.dumps({"frame": frames, "count": int(zone.current_count), "previous": last}))
            last = zone.current_count
        frames += 1
    capture.release()
    return {"frames": frames, "events": len(changes)}
