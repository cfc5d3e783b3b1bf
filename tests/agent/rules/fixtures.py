"""Small track fixtures: rows of (track id, anchor x, anchor y) per frame, 10 fps."""

from __future__ import annotations

import numpy as np

from agent.analytics.analyzers.settings import AnalysisSettings
from agent.analytics.base import ClassSelector
from agent.analytics.camera import CameraAnalyzers
from agent.analytics.registry import Area
from agent.core.types import Detections, Tracks

CLASSES = ["person", "car", "backpack"]
PERSON = ClassSelector(["person"], CLASSES, {"backpack": "bag"})
FRAME_NS = 100_000_000
SIZE_WH = (1000, 1000)


def area(polygon: np.ndarray, classes: ClassSelector = PERSON, ground=None, zone_id: str = "z") -> Area:
    """A zone for rules built from an `Area` (with the camera's analyzers, and its ground plane if given)."""
    return Area(zone_id, polygon, classes, CameraAnalyzers(AnalysisSettings()), ground)


def tracks(t: int, rows: list[tuple], ended: tuple[int, ...] = ()) -> Tracks:
    """Frame number `t`; rows of (track_id, x, y) or (track_id, x, y, class_id); anchors normalised."""
    ids = np.array([r[0] for r in rows], np.int64)
    xyxy = np.array([[r[1] * 1000 - 10, r[2] * 1000 - 40, r[1] * 1000 + 10, r[2] * 1000] for r in rows], np.float32)
    cls = np.array([r[3] if len(r) > 3 else 0 for r in rows], np.int32)
    det = Detections(xyxy.reshape(-1, 4), np.full(len(rows), 0.9, np.float32), cls)
    return Tracks("cam", t * FRAME_NS, det, ids, np.array(ended, np.int64), SIZE_WH, seen=det)


def run(rule, frames: list[tuple[list[tuple], tuple[int, ...]]]):
    """Feed frames (rows, ended) at 10 fps; return every event's body."""
    bodies = []
    for t, (rows, ended) in enumerate(frames):
        bodies += [e.body for e in rule.update(tracks(t, rows, ended))]
    return bodies
