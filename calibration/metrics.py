"""AP at IoU 0.5 over a set of images, per class; MOT ground truth loading. Pure numpy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.nms import iou_matrix
from engines.types import Detections

IOU_MATCH = 0.5


def _match_image(pred_xyxy: np.ndarray, pred_conf: np.ndarray, ref_xyxy: np.ndarray, iou: float) -> np.ndarray:
    """bool (N,) true positives: predictions in descending confidence each take the
    unmatched reference box of highest IoU >= `iou` (the VOC/COCO greedy rule)."""
    hits = np.zeros(len(pred_conf), bool)
    if not len(pred_conf) or not len(ref_xyxy):
        return hits
    overlaps = iou_matrix(pred_xyxy, ref_xyxy)
    taken = np.zeros(len(ref_xyxy), bool)
    for i in np.argsort(-pred_conf, kind="stable"):
        candidates = np.where(taken, -1.0, overlaps[i])
        j = int(candidates.argmax())
        if candidates[j] >= iou:
            taken[j] = hits[i] = True
    return hits


def average_precision(
    predictions: Sequence[Detections], references: Sequence[Detections], class_id: int, iou: float = IOU_MATCH
) -> float:
    """All-point interpolated AP (0..1) of `class_id` over aligned per-image lists.

    References are treated as ground truth (their confidences are ignored). NaN when
    the references have no box of the class (AP is undefined, not 0).
    """
    confidences, hits, total = [], [], 0
    for pred, ref in zip(predictions, references, strict=True):
        p, r = pred.class_id == class_id, ref.class_id == class_id
        total += int(r.sum())
        confidences.append(pred.confidence[p])
        hits.append(_match_image(pred.xyxy[p], pred.confidence[p], ref.xyxy[r], iou))
    if total == 0:
        return float("nan")
    order = np.argsort(-np.concatenate(confidences), kind="stable")
    tp = np.concatenate(hits)[order].astype(np.float64)
    if not len(tp):
        return 0.0
    cum_tp = np.cumsum(tp)
    recall = cum_tp / total
    precision = cum_tp / np.arange(1, len(tp) + 1)
    # Precision envelope (monotone from the right), then area under the recall steps.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((steps * envelope).sum())


def recall_precision(
    predictions: Sequence[Detections], references: Sequence[Detections], class_id: int, iou: float = IOU_MATCH
) -> tuple[float, float]:
    """(recall, precision) of all predictions of `class_id` against the references; NaN when undefined."""
    tp = n_pred = n_ref = 0
    for pred, ref in zip(predictions, references, strict=True):
        p, r = pred.class_id == class_id, ref.class_id == class_id
        tp += int(_match_image(pred.xyxy[p], pred.confidence[p], ref.xyxy[r], iou).sum())
        n_pred, n_ref = n_pred + int(p.sum()), n_ref + int(r.sum())
    return (tp / n_ref if n_ref else float("nan"), tp / n_pred if n_pred else float("nan"))


def load_mot_ground_truth(path: Path, class_id: int = 0) -> dict[int, Detections]:
    """MOTChallenge `frame,id,x,y,w,h,conf,...` rows -> {0-based frame index: Detections}.

    Every box gets `class_id` (MOT sequences label one class, persons) and confidence 1.
    Rows with conf 0 are MOT's "ignore" regions and are left out.
    """
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a MOT ground truth file (frame,id,x,y,w,h,conf,...): {exc}") from exc
    if rows.shape[1] < 7:
        raise ValueError(f"{path}: MOT rows need at least 7 columns, found {rows.shape[1]}")
    rows = rows[rows[:, 6] != 0]
    truth: dict[int, Detections] = {}
    for frame in np.unique(rows[:, 0]).astype(int):
        boxes = rows[rows[:, 0] == frame, 2:6]
        xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1).astype(np.float32)
        n = len(xyxy)
        truth[int(frame) - 1] = Detections(xyxy, np.ones(n, np.float32), np.full(n, class_id, np.int32))
    return truth
