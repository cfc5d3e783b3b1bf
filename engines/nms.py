"""Box areas, intersections and overlap (IoU), boxes that are part of a larger one, and class-aware
non-maximum suppression in numpy: the one IoU of the project."""

from __future__ import annotations

import numpy as np


def areas(xyxy: np.ndarray) -> np.ndarray:
    """Areas float64 (N,) of boxes float (N, 4), x1 y1 x2 y2; 0 for an inverted box."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0.0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0.0, None)


def intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas of boxes float (N, 4) and (M, 4), x1 y1 x2 y2 -> float64 (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    return inter_w * inter_h


def inside_larger(xyxy: np.ndarray, share: float, class_id: np.ndarray | None = None) -> np.ndarray:
    """bool (N,): boxes float (N, 4) with at least `share` of their area inside a larger box of the same set
    (of their own class, given class_id int (N,)): a second, partial detection of one object."""
    area = areas(xyxy)
    larger = area[None, :] > area[:, None]  # [i, j]: j is larger than i
    if class_id is not None:
        larger &= class_id[None, :] == class_id[:, None]
    return np.any((intersections(xyxy, xyxy) >= share * area[:, None]) & larger, axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes float (N, 4) and (M, 4), x1 y1 x2 y2 -> float64 (N, M); 0 where a union is empty."""
    inter = intersections(a, b)
    union = areas(a)[:, None] + areas(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)


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
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < max_detections:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        order = rest[iou_matrix(boxes[best], boxes[rest])[0] <= iou_threshold]
    return np.asarray(kept, np.int64)
