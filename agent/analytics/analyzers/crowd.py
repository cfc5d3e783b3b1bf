"""Crowd edges: the edges of the analysis downscale, the texture of a crowd.

Heads, shoulders and clothes give many short edges, more the more people are packed in a place,
and crowd_density's crowded mode turns their amount inside the boxes of the persons seen,
normalised by perspective, into a count where people are too packed for boxes
(agent/analytics/crowd.py). The mask stays in the analyzer and the rules, like every frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from agent.analytics.analyzers.settings import CrowdAnalyzerSettings


class CrowdAnalyzer:
    """One camera's crowd edges; `edges` is bool (h, w) at the analysis width (None before the first sample)."""

    def __init__(self, settings: CrowdAnalyzerSettings) -> None:
        self._s = settings
        self.edges: np.ndarray | None = None

    def observe(self, small_bgr: np.ndarray, pts_ns: int) -> None:
        """small_bgr: uint8 (h, w, 3). Updates `edges`."""
        self.edges = cv2.Canny(cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY), self._s.edge_low, self._s.edge_high) > 0
