"""What a clip's ground truth says, through the agent's own rules: the reference the tests and
the benchmarks compare the pipeline with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.analytics.base import ClassSelector
from agent.analytics.kinds.line_count import LineCountRule, LineSettings
from agent.core.types import Detections, Tracks


def gt_line_counts(gt_path: Path, line, size_wh: tuple[int, int] = (768, 576), fps: float = 10.0) -> tuple[int, int]:
    """In/out counts of the clip's ground-truth tracks (MOT rows: frame, id, x, y, w, h) through the line rule."""
    gt = np.loadtxt(gt_path, delimiter=",")
    rule = LineCountRule("l", np.asarray(line, np.float32), ClassSelector(["person"], ["person"], {}), LineSettings())
    for frame in range(1, int(gt[:, 0].max()) + 1):
        g = gt[gt[:, 0] == frame]
        xyxy = np.c_[g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]].astype(np.float32)
        det = Detections(xyxy, np.ones(len(g), np.float32), np.zeros(len(g), np.int32))
        pts_ns = round(frame * 1e9 / fps)
        rule.update(Tracks("gt", pts_ns, det, g[:, 1].astype(np.int64), np.zeros(0, np.int64), size_wh))
    count_in, count_out = rule.counts["person"]
    return count_in, count_out
