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
brings its own edges. On a patterned floor the two are close, so a region reported at the
last sample stays while its outline is at least `GHOST_KEEP` as sharp as the background's:
a bag there was reported and dropped in turn, and its unattended time never added up.
"""

from __future__ import annotations

import cv2
import numpy as np

from agent.analytics.analyzers.settings import StaticAnalyzerSettings
from agent.core.units import NS_PER_S

_KERNEL = np.ones((3, 3), np.uint8)
GHOST_KEEP = 0.9  # a region reported at the last sample stays while its outline is this sharp against the background's


class StaticAnalyzer:
    """Per-camera background state; `boxes` are the static regions of the last sample as
    float32 (K, 4) normalised (x1, y1, x2, y2), and `static_since_ns` int64 (K,) when each first
    counted as static (its pixels' median): a region the ghost test held back is reported late,
    and what happened around it is to be looked for at that time."""

    def __init__(self, settings: StaticAnalyzerSettings) -> None:
        self._s = settings
        self._long: np.ndarray | None = None
        self._short: np.ndarray | None = None
        self._still_since_ns: np.ndarray | None = None
        self._samples = 0
        self._first_ns = 0
        self._prev_ns = 0
        self.boxes = np.zeros((0, 4), np.float32)
        self.static_since_ns = np.zeros(0, np.int64)
        self._reported: np.ndarray | None = None  # bool (h, w): the pixels of the regions reported last

    def observe(self, small_bgr: np.ndarray, pts_ns: int) -> None:
        """small_bgr: uint8 (h, w, 3). Updates `boxes` and `static_since_ns`."""
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
        self._regions(cv2.morphologyEx(static, cv2.MORPH_CLOSE, _KERNEL), static.astype(bool), grey)

    def _regions(self, closed: np.ndarray, static: np.ndarray, grey: np.ndarray) -> None:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
        h, w = closed.shape
        area = stats[:, cv2.CC_STAT_AREA] / float(h * w)
        keep = np.flatnonzero((area >= self._s.min_area) & (area <= self._s.max_area))
        keep = keep[keep > 0]
        if len(keep):
            reported = self._reported if self._reported is not None and self._reported.shape == labels.shape else None
            known = np.zeros(len(stats), bool)
            if reported is not None:
                known[labels[reported]] = True
            ratio = np.where(known[keep], GHOST_KEEP, 1.0)
            sharp = _outline_edges(grey, labels, stats, keep) >= ratio * _outline_edges(self._long, labels, stats, keep)
            keep = keep[sharp]
        kept = np.zeros(len(stats), bool)
        kept[keep] = True
        self._reported = kept[labels]
        x, y, bw, bh = (stats[keep, i].astype(np.float32) for i in range(4))
        self.boxes = np.stack([x / w, y / h, (x + bw) / w, (y + bh) / h], axis=1).reshape(-1, 4)
        since = []
        for k in keep.tolist():  # within the region's box: its pixels' median
            x0, y0, bw0, bh0 = stats[k, :4]
            box = np.s_[y0 : y0 + bh0, x0 : x0 + bw0]
            since.append(np.median(self._still_since_ns[box][(labels[box] == k) & static[box]]))
        self.static_since_ns = np.asarray(since, np.float64).astype(np.int64) + int(self._s.still_s * NS_PER_S)


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
