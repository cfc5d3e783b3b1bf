"""Static foreground: regions that differ from the long-term background but have
stopped changing, i.e. something new that stays still (a left bag).

Two running averages of the frame: a long-term background (what the scene
looks like empty) and a short-term one (what it looks like now). A pixel far
from the first but close to the second is new and still; it must stay so for
`still_s` to count. Frames are compared as reflectance, each pixel's grey over
its neighbourhood's mean brightness (`illumination_px`), so clouds, lights
switched on or a warmer light change little. The long-term average starts as a
plain mean of the samples so far, so people present in the first frame fade
instead of leaving ghosts, but only for `warmup_s`: after that a new object
must not be averaged in within seconds. A region whose outline is sharper in
the background than in the frame is a ghost (what was there has gone: a person
who stood still at the start and walked off) and is dropped: a new object
brings its own edges.
"""

from __future__ import annotations

import cv2
import numpy as np

from agent.analytics.analyzers.settings import StaticAnalyzerSettings
from agent.core.units import NS_PER_S

_KERNEL = np.ones((3, 3), np.uint8)


class StaticAnalyzer:
    """Per-camera background state; `boxes` are the static regions of the last sample as
    float32 (K, 4) normalised (x1, y1, x2, y2)."""

    def __init__(self, settings: StaticAnalyzerSettings) -> None:
        self._s = settings
        self._long: np.ndarray | None = None
        self._short: np.ndarray | None = None
        self._still_since_ns: np.ndarray | None = None
        self._samples = 0
        self._first_ns = 0
        self._prev_ns = 0
        self.boxes = np.zeros((0, 4), np.float32)

    def observe(self, small_bgr: np.ndarray, pts_ns: int) -> None:
        """small_bgr: uint8 (h, w, 3). Updates `boxes`."""
        grey = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
        grey *= 128.0 / (cv2.GaussianBlur(grey, (0, 0), self._s.illumination_px) + 8.0)
        if self._long is None or self._long.shape != grey.shape:
            self._long, self._short = grey.copy(), grey.copy()
            self._still_since_ns = np.full(grey.shape, pts_ns, np.int64)
            self._samples, self._first_ns, self._prev_ns = 1, pts_ns, pts_ns
            return
        dt_s = (pts_ns - self._prev_ns) / NS_PER_S
        self._samples += 1
        self._prev_ns = pts_ns
        alpha_long = min(dt_s / self._s.background_s, 1.0)
        if pts_ns - self._first_ns < self._s.warmup_s * NS_PER_S:
            alpha_long = max(alpha_long, 1.0 / self._samples)
        self._long += alpha_long * (grey - self._long)
        self._short += min(dt_s / self._s.recent_s, 1.0) * (grey - self._short)
        new_and_still = (np.abs(grey - self._long) > self._s.diff_min) & (np.abs(grey - self._short) < self._s.diff_min)
        self._still_since_ns[~new_and_still] = pts_ns
        static = (pts_ns - self._still_since_ns >= self._s.still_s * NS_PER_S).astype(np.uint8)
        # a left object differs from the background mostly along its outline: closing joins the outline
        self.boxes = self._regions(cv2.morphologyEx(static, cv2.MORPH_CLOSE, _KERNEL), grey)

    def _regions(self, static: np.ndarray, grey: np.ndarray) -> np.ndarray:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(static, connectivity=8)
        h, w = static.shape
        area = stats[:, cv2.CC_STAT_AREA] / float(h * w)
        keep = np.flatnonzero((area >= self._s.min_area) & (area <= self._s.max_area))
        keep = keep[keep > 0]
        if len(keep):
            keep = keep[_outline_edges(grey, labels, stats, keep) >= _outline_edges(self._long, labels, stats, keep)]
        x, y, bw, bh = (stats[keep, i].astype(np.float32) for i in range(4))
        return np.stack([x / w, y / h, (x + bw) / w, (y + bh) / h], axis=1).reshape(-1, 4)


def _outline_edges(image: np.ndarray, labels: np.ndarray, stats: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float32 (K,): mean gradient magnitude of `image` on the outline (one pixel each side) of each region `ids`,
    computed within each region's box (`stats` of connectedComponentsWithStats) grown by 2 pixels."""
    h, w = labels.shape
    out = np.zeros(len(ids), np.float32)
    for i, k in enumerate(ids.tolist()):
        x, y, bw, bh = stats[k, :4]
        box = np.s_[max(y - 2, 0) : min(y + bh + 2, h), max(x - 2, 0) : min(x + bw + 2, w)]
        crop = image[box]
        mag = cv2.magnitude(cv2.Sobel(crop, cv2.CV_32F, 1, 0), cv2.Sobel(crop, cv2.CV_32F, 0, 1))
        region = (labels[box] == k).astype(np.uint8)
        out[i] = float(mag[cv2.dilate(region, _KERNEL) != cv2.erode(region, _KERNEL)].mean())
    return out
