"""Flames by colour and flicker on a downscaled frame, told from lights by how the region behaves.

A pixel is a fire candidate when it is flame-coloured (bright, red >= green > blue, red
well above blue so white and grey highlights do not count), its brightness keeps
changing (flames flicker at several Hz; a red car does not) and both hold in most
recent samples at the same place (a red coat walking past, or people passing behind
red tape, light a pixel only briefly). A 3x3 opening drops the isolated pixels that
motion edges leave.

Each candidate region (connected, slightly dilated) is then measured over the last
`window_s` of flame-colour masks, which is what separates flames from lights:

- `lit`: share of samples in which the region was substantially flame-coloured. Flames
  never go dark together; a beacon blinking hard on/off is dark about half the time.
- `motion`: the change of the region's shape between samples that its change of area does
  not explain (pixels turning on and off at once inside it), per lit pixel. A flame's
  ragged boundary moves all the time; a beacon, a sign, a lamp or a reflection keeps its
  shape (it is on, off or steady), so it scores about 0.
- `growth`: the region's lit area over the last third of the window against the first.
- `age_s`, `age_samples`: how long, and over how many samples, candidates have stayed at this
  place without a break: flames stay put, flame-coloured movers (headlights, people under warm
  light, a person walking over a flame-coloured floor) pass on. Breaks between samples go
  unseen, so a slower camera (fewer samples a second) makes movers seem to stay longer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from agent.analytics.analyzers.settings import FireAnalyzerSettings
from agent.core.units import NS_PER_S

_OPEN_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True, slots=True)
class FlameRegion:
    """One candidate region of the last sample: `label` in `FireAnalyzer.labels`; its measures (see above)."""

    label: int
    lit: float
    motion: float
    growth: float
    age_s: float
    age_samples: int


class FireAnalyzer:
    """Keeps the per-pixel flicker average and the recent flame-colour masks of one camera. After each
    sample: `mask` the candidate pixels, `labels` int32 (h, w) the candidate regions (0: none), `regions`
    their measures."""

    def __init__(self, settings: FireAnalyzerSettings) -> None:
        self._s = settings
        self._prev_luma: np.ndarray | None = None
        self._prev_ns = 0
        self._flicker: np.ndarray | None = None
        self._share: np.ndarray | None = None
        self._since_ns: np.ndarray | None = None  # per pixel: since when candidates have been next to it
        self._since_n: np.ndarray | None = None  # the same as a sample number
        self._n = 0  # samples so far
        self._colours: deque[tuple[int, np.ndarray]] = deque()  # (pts_ns, flame-colour mask bool (h, w))
        self.mask: np.ndarray | None = None  # bool (h, w)
        self.labels: np.ndarray | None = None  # int32 (h, w)
        self.regions: list[FlameRegion] = []

    def observe(self, small_bgr: np.ndarray, pts_ns: int) -> None:
        """small_bgr: uint8 (h, w, 3). Updates `mask`, `labels` and `regions`."""
        img = small_bgr.astype(np.int16)
        b, g, r = img[..., 0], img[..., 1], img[..., 2]
        colour = (r >= self._s.red_min) & (r >= g) & (g > b) & (r - b >= self._s.red_minus_blue_min)
        luma = img.sum(axis=2, dtype=np.int16) // 3
        if self._prev_luma is None or self._prev_luma.shape != luma.shape:
            self._flicker = np.zeros(luma.shape, np.float32)
            self._share = np.zeros(luma.shape, np.float32)
            self._since_ns = np.full(luma.shape, pts_ns, np.int64)
            self._since_n = np.full(luma.shape, self._n, np.int64)
            self._colours.clear()
        else:
            # weight by elapsed time so the averages mean the same at any analysis rate
            dt_s = (pts_ns - self._prev_ns) / NS_PER_S
            change = np.abs(luma - self._prev_luma).astype(np.float32)
            self._flicker += _alpha(dt_s, self._s.flicker_memory_s) * (change - self._flicker)
            fire_now = colour & (self._flicker >= self._s.flicker_min)
            self._share += _alpha(dt_s, self._s.persistence_s) * (fire_now - self._share)
        self._prev_luma, self._prev_ns = luma, pts_ns
        self._colours.append((pts_ns, colour))
        while pts_ns - self._colours[0][0] > self._s.window_s * NS_PER_S:
            self._colours.popleft()
        steady = (self._share >= self._s.persistence_min).astype(np.uint8)
        mask = cv2.morphologyEx(steady, cv2.MORPH_OPEN, _OPEN_KERNEL)
        away = cv2.dilate(mask, _OPEN_KERNEL) == 0
        self._since_ns[away], self._since_n[away] = pts_ns, self._n
        self._n += 1
        self.mask = mask.astype(bool)
        self._measure(pts_ns)

    def _measure(self, pts_ns: int) -> None:
        """Label the candidate regions and measure each over the recent colour masks, all within the
        candidates' bounding box (usually a small part of the frame)."""
        self.regions = []
        self.labels = np.zeros(self.mask.shape, np.int32)
        grown = cv2.dilate(self.mask.astype(np.uint8), _OPEN_KERNEL, iterations=2)
        if not grown.any():
            return
        ys, xs = np.nonzero(grown)
        box = np.s_[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        n, labels = cv2.connectedComponents(grown[box])
        self.labels[box] = labels
        flat = labels.ravel()
        masks = [c[box].ravel() for _, c in self._colours]
        lit = np.stack([np.bincount(flat, weights=c, minlength=n) for c in masks])  # (T, n) lit pixels per region
        flips = [np.bincount(flat, weights=c1 ^ c0, minlength=n) for c0, c1 in zip(masks[:-1], masks[1:])]
        moved = (np.sum(flips, axis=0) - np.abs(np.diff(lit, axis=0)).sum(axis=0)) / np.maximum(lit[1:].sum(axis=0), 1.0)
        third = max(len(masks) // 3, 1)
        growth = lit[-third:].mean(axis=0) / np.maximum(lit[:third].mean(axis=0), 1.0)
        lit_share = (lit >= 0.3 * np.maximum(lit.max(axis=0), 1.0)).mean(axis=0)
        mask, since_ns, since_n = self.mask[box], self._since_ns[box], self._since_n[box]
        for k in range(1, n):
            here = (labels == k) & mask
            self.regions.append(FlameRegion(
                k, float(lit_share[k]), float(moved[k]) if flips else 0.0, float(growth[k]),
                (pts_ns - int(since_ns[here].min())) / NS_PER_S, self._n - 1 - int(since_n[here].min()),
            ))  # fmt: skip


def _alpha(dt_s: float, memory_s: float) -> float:
    """Weight of a new sample in an exponential average with time constant `memory_s`."""
    return float(np.clip(dt_s / memory_s, 0.0, 1.0))
