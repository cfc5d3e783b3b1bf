"""INT8 versus FP32 on held-out frames: agreement, true AP50, latency."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from calibration.metrics import average_precision, recall_precision
from engines.base import Engine
from engines.types import Detections

# Detections are collected down to this score so AP sees the whole precision/recall curve.
AP_CONFIDENCE = 0.05
# The operating point used as the FP32 reference for agreement (the Detector's default).
OPERATING_CONFIDENCE = 0.3


def at_confidence(found: Sequence[Detections], confidence: float) -> list[Detections]:
    """Each image's detections scoring >= `confidence`. Same as running NMS at that
    threshold: greedy NMS only lets higher-scored boxes suppress lower ones."""
    return [d.select(d.confidence >= confidence) for d in found]


def _points(value: float) -> float | None:
    """AP (0..1) -> percentage points rounded to 0.01; None (JSON null) when undefined."""
    return None if math.isnan(value) else round(100.0 * value, 2)


def agreement(
    fp32: Sequence[Detections], int8: Sequence[Detections], class_names: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """Per class present in the FP32 reference (FP32 detections >= OPERATING_CONFIDENCE):
    AP50 of INT8 (all scores >= AP_CONFIDENCE) taking that reference as truth, plus
    INT8's recall and precision at the operating point, in percentage points."""
    reference = at_confidence(fp32, OPERATING_CONFIDENCE)
    int8_operating = at_confidence(int8, OPERATING_CONFIDENCE)
    present = np.unique(np.concatenate([r.class_id for r in reference])) if reference else []
    rows = {}
    for class_id in present:
        recall, precision = recall_precision(int8_operating, reference, int(class_id))
        rows[class_names[class_id]] = {
            "reference_boxes": int(sum((r.class_id == class_id).sum() for r in reference)),
            "ap50": _points(average_precision(int8, reference, int(class_id))),
            "recall": _points(recall),
            "precision": _points(precision),
        }
    return rows


def true_ap50(
    fp32: Sequence[Detections], int8: Sequence[Detections], truth: Sequence[Detections], class_id: int
) -> dict[str, float | int | None]:
    """AP50 (percentage points) of both models against ground truth, and the drop FP32 - INT8."""
    ap_fp32 = _points(average_precision(fp32, truth, class_id))
    ap_int8 = _points(average_precision(int8, truth, class_id))
    drop = None if ap_fp32 is None or ap_int8 is None else round(ap_fp32 - ap_int8, 2)
    boxes = int(sum((t.class_id == class_id).sum() for t in truth))
    return {"truth_boxes": boxes, "fp32_ap50": ap_fp32, "int8_ap50": ap_int8, "drop_points": drop}


def measure_latency_ms(
    engines: Mapping[str, Engine], batch: np.ndarray, rounds: int = 6, window_s: float = 0.5
) -> dict[str, dict[str, float]]:
    """Per-frame inference latency of each engine on the same float32 (B, 3, H, W) batch.

    Engines take turns in `rounds` windows of `window_s` each, so load from other
    processes hits them alike; reports the median and the minimum of the window
    means (ms per frame) and each one's speed-up over the first engine (medians).
    """
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            engine.infer(batch)  # warm caches after the other engine ran
            runs, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < window_s or runs == 0:
                engine.infer(batch)
                runs += 1
            samples[name].append(1e3 * elapsed / (runs * len(batch)))
    first = float(np.median(next(iter(samples.values()))))
    return {
        name: {
            "median_ms": round(float(np.median(s)), 3),
            "min_ms": round(float(np.min(s)), 3),
            "speedup_vs_first": round(first / float(np.median(s)), 3),
        }
        for name, s in samples.items()
    }
