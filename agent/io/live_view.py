"""What the agent sees, for the local zone editor only: each camera's tracks of the
latest frame (boxes and tracker ids) and its latest rule events.

The pipeline's analytics thread `record`s every frame; the editor reads `view`. None
of this is ever published: tracker ids and boxes stay on the box (the editor listens
on loopback only, behind its per-boot token).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.core.events import Event
from agent.core.geometry import points_in_polygon
from agent.core.types import Tracks

__all__ = ["LiveView"]

RECENT_EVENTS = 50  # per camera: enough for a page polling a few times a second


@dataclass(frozen=True)
class _Seen:
    tracks: Tracks
    class_names: Sequence[str]


class LiveView:
    """Thread-safe: one writer (the analytics thread), any number of readers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}
        self._events: dict[str, deque[dict[str, Any]]] = {}
        self._next_seq = 1

    def record(self, tracks: Tracks, events: list[Event], class_names: Sequence[str]) -> None:
        with self._lock:
            self._seen[tracks.camera_id] = _Seen(tracks, class_names)
            recent = self._events.setdefault(tracks.camera_id, deque(maxlen=RECENT_EVENTS))
            for event in events:
                recent.append({"seq": self._next_seq, "wall_ms": time.time_ns() // 1_000_000,
                               **event.body.model_dump(mode="json")})  # fmt: skip
                self._next_seq += 1

    def view(self, camera_id: str, polygons: dict[str, list[tuple[float, float]]]) -> dict[str, Any] | None:
        """The camera's latest tracks (normalised boxes), recent events (each with a `seq`
        that only grows) and, per polygon id, the tracks whose anchor (bottom centre) is
        inside it now. None before the camera's first frame."""
        with self._lock:
            seen = self._seen.get(camera_id)
            events = list(self._events.get(camera_id, ()))
        if seen is None:
            return None
        tracks = seen.tracks
        w, h = tracks.size_wh
        boxes = tracks.detections.xyxy / np.array([w, h, w, h], dtype=np.float32)
        names = seen.class_names
        class_ids = tracks.detections.class_id
        anchors = tracks.anchors_norm()
        inside = {
            shape_id: [int(t) for t in tracks.track_id[points_in_polygon(anchors, np.asarray(polygon, np.float32))]]
            for shape_id, polygon in polygons.items()
        } if len(tracks) else {shape_id: [] for shape_id in polygons}  # fmt: skip
        return {
            "size": [w, h],
            "tracks": [
                {
                    "id": int(track_id),
                    "class_name": names[c] if 0 <= c < len(names) else str(c),
                    "box": [round(float(v), 4) for v in box],
                }
                for track_id, c, box in zip(tracks.track_id, class_ids.tolist(), boxes)
            ],
            "inside": inside,
            "events": events,
        }
