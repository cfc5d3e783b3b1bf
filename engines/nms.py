"""Class-aware non-maximum suppression in numpy."""

from __future__ import annotations

import numpy as np


def nms(
    xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou_threshold: float, max_detections: int
) -> np.ndarray:
    """Greedy class-aware NMS: a box only suppresses boxes of its own class.

    xyxy: float32 (N, 4); scores: float32 (N,); class_id: int (N,).
    Returns int64 (K,) indices into the inputs, K <= max_detections, by
    descending score. A box is dropped when its IoU with a kept, higher-scored
    box of the same class exceeds `iou_threshold`.
    """
    if len(scores) == 0 or max_detections <= 0:
        return np.zeros((0,), np.int64)
    # Shift each class into its own disjoint region so one IoU pass handles all classes.
    boxes = xyxy.astype(np.float64)
    span = float(boxes.max() - boxes.min()) + 1.0
    boxes = boxes + ((class_id.astype(np.float64) * span) - boxes.min())[:, None]
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < max_detections:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        inter_w = (np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0])).clip(0)
        inter_h = (np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1])).clip(0)
        inter = inter_w * inter_h
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(kept, np.int64)
