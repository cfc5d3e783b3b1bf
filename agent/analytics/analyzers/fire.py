"""Flames by colour and flicker on a downscaled frame.

A pixel is fire when it is flame-coloured (bright, red >= green > blue, red well
above blue so white and grey highlights do not count), its brightness keeps
changing (flames flicker at several Hz; a red car does not) and both hold in
most recent samples at the same place (a red coat walking past, or people
passing behind red tape, light a pixel only briefly). A 3x3 opening drops the
isolated pixels that motion edges leave. The fire area is reported, so a
rule can also see it grow.
"""

from __future__ import annotations

import cv2
import numpy as np

from agent.analytics.analyzers.settings import FireAnalyzerSettings
from agent.core.units import NS_PER_S

_OPEN_KERNEL = np.ones((3, 3), np.uint8)


class FireAnalyzer:
    """Keeps the per-pixel flicker average of one camera; `mask` is the fire mask of the last sample."""

    def __init__(self, settings: FireAnalyzerSettings) -> None:
        self._s = settings
        self._prev_luma: np.ndarray | None = None
        self._prev_ns = 0
        self._flicker: np.ndarray | None = None
        self._share: np.ndarray | None = None
        self.mask: np.ndarray | None = None  # bool (h, w)

    def observe(self, small_bgr: np.ndarray, pts_ns: int) -> None:
        """small_bgr: uint8 (h, w, 3). Updates `mask`, bool (h, w)."""
        img = small_bgr.astype(np.int16)
        b, g, r = img[..., 0], img[..., 1], img[..., 2]
        colour = (r >= self._s.red_min) & (r >= g) & (g > b) & (r - b >= self._s.red_minus_blue_min)
        luma = img.sum(axis=2, dtype=np.int16) // 3
        if self._prev_luma is None or self._prev_luma.shape != luma.shape:
            self._flicker = np.zeros(luma.shape, np.float32)
            self._share = np.zeros(luma.shape, np.float32)
        else:
            # weight by elapsed time so the averages mean the same at any analysis rate
            dt_s = (pts_ns - self._prev_ns) / NS_PER_S
            change = np.abs(luma - self._prev_luma).astype(np.float32)
            self._flicker += _alpha(dt_s, self._s.flicker_memory_s) * (change - self._flicker)
            fire_now = colour & (self._flicker >= self._s.flicker_min)
            self._share += _alpha(dt_s, self._s.persistence_s) * (fire_now - self._share)
        self._prev_luma, self._prev_ns = luma, pts_ns
        steady = (self._share >= self._s.persistence_min).astype(np.uint8)
        self.mask = cv2.morphologyEx(steady, cv2.MORPH_OPEN, _OPEN_KERNEL).astype(bool)


def _alpha(dt_s: float, memory_s: float) -> float:
    """Weight of a new sample in an exponential average with time constant `memory_s`."""
    return float(np.clip(dt_s / memory_s, 0.0, 1.0))
