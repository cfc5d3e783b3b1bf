"""Counting people in a crowd: what is seen now, smoothed over a short window, with a foreground-area
estimate that takes over where people are too packed or small for boxes.

- Detections: the persons the detector saw at a frame (`Tracks.seen`), feet inside the zone. In a
  crowd, tracks confirm too slowly and lose people who move far between frames; the boxes of the
  frame do not. A crowded zone is also detected on tiles at a higher effective resolution
  (agent/runtime/tiles.py).
- Area: the boxes count scaled by `BOX_WEIGHT` plus the crowd's foreground, the edges of the analysis
  downscale (agent/analytics/analyzers/crowd.py) inside the boxes of the persons seen in the zone,
  each edge pixel weighted by 1 / h(y) ** HEIGHT_POWER, h(y) the height of a person standing at that
  image row (a far person covers fewer pixels), times `EDGE_PERSONS_K`. Packed people hidden behind
  the boxes found add their heads' and shoulders' texture inside those boxes, which the box count
  misses. h(y) is fitted to the boxes seen (`Perspective`): no calibration needed.
- The area estimate takes over where it is larger than the detections and the persons' boxes cover at
  least `PACKED` of the zone (people packed: in a sparse scene the boxes see everyone, and the area
  estimate, fitted on crowds, would count each person about twice); the event says which estimate
  was used.

`BOX_WEIGHT`, `EDGE_PERSONS_K` and `PACKED` were fitted by `benchmarks/crowd_fit.py` on the shared Mall,
ShanghaiTech B and vtest data with cross-validation, with the tile merge's constants (README, "Crowds and
real units")."""

from __future__ import annotations

from collections import deque
from typing import Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import Settings
from agent.core.geometry import feet, points_in_polygon, polygon_mask
from agent.core.types import Tracks
from agent.core.units import NS_PER_S

# fitted on everything by `make crowd-fit` (benchmarks/results/crowd_fit.json); held-out figures in the README
BOX_WEIGHT = 1.35  # the detections' share of the area estimate (above 1: boxes miss people, the merge drops some)
EDGE_PERSONS_K = 1.995  # persons per crowd-edge pixel inside the boxes, per 1 / h(y) ** HEIGHT_POWER
PACKED = 0.075  # the share of the zone the persons' boxes must cover for the area estimate to count
HEIGHT_POWER = 2.0  # a person's crowd edges grow with their area, as h(y) ** 2 (cross-validation preferred 2 to 1)
SMOOTH_S = 1.0  # default window of the count's mean over the detected frames
Estimate = Literal["detections", "area"]

_BINS = 8  # rows of the frame over which box heights are summarised for the perspective fit
_MIN_HEIGHT_SHARE = 0.01  # h(y) is never taken below this share of the frame height (near the horizon)


class CrowdedSettings(Settings):
    zoom: float = Field(
        2.0,
        ge=1.0,
        le=4.0,
        description="the zone is also detected on tiles of the model's input size divided by "
        "this, in frame pixels (a 416 model with zoom 2 sees 208 px tiles, people twice as large), merged with "
        "the whole frame's boxes by NMS; the cost grows as zoom² times the zone's share of the frame",
    )
    area_estimate: bool = Field(
        True,
        description="let the crowd's foreground area, normalised by perspective, take over where it "
        "finds more people than the boxes and the boxes cover a good part of the zone (people packed)",
    )


class Perspective:
    """Height (px) of a person whose feet are at image row y (px), fitted to recent boxes: h(y) = a + b y
    on the median height of each of `_BINS` horizontal bands (robust to partial and merged boxes)."""

    def __init__(self, samples: int = 600) -> None:
        self._y: deque[float] = deque(maxlen=samples)
        self._h: deque[float] = deque(maxlen=samples)

    def add(self, bottoms_px: np.ndarray, heights_px: np.ndarray) -> None:
        self._y.extend(bottoms_px.tolist())
        self._h.extend(heights_px.tolist())

    def heights(self, rows_px: np.ndarray, frame_h: int) -> np.ndarray | None:
        """h at each row (float64 (N,)), or None before any box was seen."""
        if not self._y:
            return None
        y, h = np.asarray(self._y), np.asarray(self._h)
        band = np.minimum((y / frame_h * _BINS).astype(int), _BINS - 1)
        centres, medians = [], []
        for b in np.unique(band):
            if np.count_nonzero(band == b) >= 2:
                centres.append(float(np.median(y[band == b])))
                medians.append(float(np.median(h[band == b])))
        if len(centres) >= 2 and np.ptp(centres) > 0.1 * frame_h:
            slope, offset = np.polyfit(centres, medians, 1)
            slope = max(slope, 0.0)  # nearer (lower) people are never smaller
        else:
            slope, offset = 0.0, float(np.median(h))
        return np.maximum(offset + slope * rows_px, _MIN_HEIGHT_SHARE * frame_h)


class ZoneCount:
    """The person count of one zone, from what is seen now, smoothed over `smooth_s`; with `area`, the
    foreground-area estimate can take over. `update` once per frame; `count` and `estimate` after it."""

    def __init__(self, polygon: np.ndarray, person_ids: np.ndarray, smooth_s: float, area: bool) -> None:
        self._polygon = polygon
        self.person_ids = person_ids
        self._window_ns = int(smooth_s * NS_PER_S)
        self._area = area
        self._perspective = Perspective()
        self._samples: deque[tuple[int, int, float | None, float]] = deque()  # (pts, detections, area, coverage)
        self._zone_mask: np.ndarray | None = None  # the zone at the analysis size (made at the first edges)
        self._zone_px = 1  # its pixels
        self.count = 0
        self.estimate: Estimate = "detections"
        self.detected = 0.0  # smoothed count of the detections (evaluation)
        self.area_count: float | None = None  # smoothed area estimate (evaluation)
        self.coverage = 0.0  # smoothed share of the zone the persons' boxes cover (evaluation)

    def update(self, tracks: Tracks, edges: np.ndarray | None) -> None:
        """edges: the camera's crowd edges bool (h, w) at the analysis width (None: none yet)."""
        seen = tracks.seen
        if seen is not None:
            h = tracks.size_wh[1]
            xyxy = seen.xyxy[np.isin(seen.class_id, self.person_ids)]
            inside = xyxy[points_in_polygon(feet(xyxy, tracks.size_wh), self._polygon)] if len(xyxy) else xyxy
            area, coverage = None, 0.0
            if self._area:
                self._perspective.add(xyxy[:, 3], xyxy[:, 3] - xyxy[:, 1])
                if edges is not None:
                    area, coverage = self._area_estimate(edges, inside, h)
            self._samples.append((tracks.pts_ns, len(inside), area, coverage))
        while self._samples and tracks.pts_ns - self._samples[0][0] > self._window_ns:
            self._samples.popleft()
        if not self._samples:
            self.count, self.estimate, self.detected, self.area_count, self.coverage = 0, "detections", 0.0, None, 0.0
            return
        self.detected = float(np.mean([s[1] for s in self._samples]))
        areas = [s[2] for s in self._samples if s[2] is not None]
        self.area_count = float(np.mean(areas)) if areas else None
        self.coverage = float(np.mean([s[3] for s in self._samples]))
        if self.area_count is not None and self.coverage >= PACKED and self.area_count > self.detected:
            self.count, self.estimate = round(self.area_count), "area"
        else:
            self.count, self.estimate = round(self.detected), "detections"

    def _area_estimate(self, edges: np.ndarray, boxes_px: np.ndarray, frame_h: int) -> tuple[float | None, float]:
        """Persons by the zone's person boxes (float (N, 4), frame pixels) and the crowd edges inside them,
        normalised by perspective (None before any box was seen), and the share of the zone the boxes cover."""
        eh = edges.shape[0]
        scale = eh / frame_h  # analysis pixels per frame pixel
        covered = np.zeros(edges.shape, bool)
        for x0, y0, x1, y1 in (boxes_px * scale).tolist():
            covered[max(int(y0), 0) : int(np.ceil(y1)), max(int(x0), 0) : int(np.ceil(x1))] = True
        if self._zone_mask is None or self._zone_mask.shape != edges.shape:
            self._zone_mask = polygon_mask(self._polygon, edges.shape)
            self._zone_px = max(np.count_nonzero(self._zone_mask), 1)
        coverage = np.count_nonzero(covered & self._zone_mask) / self._zone_px
        heights = self._perspective.heights((np.arange(eh) + 0.5) / scale, frame_h)
        if heights is None:
            return None, coverage
        per_row = np.count_nonzero(edges & covered, axis=1)
        weighted = float(np.sum(per_row / (heights * scale) ** HEIGHT_POWER))
        return BOX_WEIGHT * len(boxes_px) + EDGE_PERSONS_K * weighted, coverage
