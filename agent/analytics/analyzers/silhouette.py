"""Moving-foreground silhouettes by background subtraction on a small grey frame.

OpenCV's MOG2 keeps a per-pixel mixture of the background; what differs from it is
foreground. A person who falls and lies still stays foreground for about a tenth of
`history_s` (MOG2 takes a new mode into the background once it holds a tenth of the
weight), whether or not the detector sees them lying: the person-down rule reads
the silhouette where a person went down. The first `warmup_s` learn fast (as MOG2 does by
itself), so a camera's background settles within seconds of the start. A
closing first joins the speckled mask of a body whose clothes are close to the
background, then an opening drops isolated speckle. The mask is a
silhouette, not an image: it stays in the analyzer and the rules, like every frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from agent.analytics.analyzers.downscale import downscale
from agent.analytics.analyzers.settings import SilhouetteAnalyzerSettings
from agent.core.units import NS_PER_S

_KERNEL = np.ones((3, 3), np.uint8)


class SilhouetteAnalyzer:
    """One camera's background model; `mask` is the foreground of the last sample, bool (h, w) at
    `width_px` wide (None before the first), read by the rules of the camera and never sent."""

    def __init__(self, settings: SilhouetteAnalyzerSettings) -> None:
        self._s = settings
        self._mog = cv2.createBackgroundSubtractorMOG2(500, settings.var_threshold, detectShadows=False)
        self._samples = 0
        self._first_ns = 0
        self._prev_ns = 0
        self.mask: np.ndarray | None = None

    def observe(self, small_bgr: np.ndarray, pts_ns: int) -> None:
        """small_bgr: uint8 (h, w, 3). Updates `mask`."""
        self.observe_grey(cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY), pts_ns)

    def observe_grey(self, grey: np.ndarray, pts_ns: int) -> None:
        """grey: uint8 (h, w), the shared downscaled frame in grey (benchmarks replay these)."""
        # learning rate by elapsed time, so the background's memory is the same at any analysis rate
        self._samples += 1
        if self._samples == 1:
            self._first_ns = self._prev_ns = pts_ns
        if pts_ns - self._first_ns <= self._s.warmup_s * NS_PER_S:
            rate = 1.0 / self._samples
        else:
            rate = min(1.0, (pts_ns - self._prev_ns) / NS_PER_S / self._s.history_s)
        self._prev_ns = pts_ns
        fg = self._mog.apply(downscale(grey, self._s.width_px), learningRate=rate)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, _KERNEL)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, _KERNEL)
        self.mask = fg.astype(bool)
