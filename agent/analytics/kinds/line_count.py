"""Line crossing with direction: in/out counts per class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import ClassSelector, Settings
from agent.analytics.registry import Kind, per_area
from agent.core.events import Body, ClassName, Event, Id, Point, Tally
from agent.core.geometry import segments_cross, side_of_line
from agent.core.types import Tracks


class LineCountBody(Body):
    """A subject crossed a counting line; counts are cumulative per line and class since start."""

    kind: Literal["line_count"] = "line_count"
    line_id: Id
    direction: Literal["in", "out"] = Field(description="in: from the line's left side to its right side")
    class_name: ClassName
    point: Point = Field(description="anchor point just after the crossing")
    count_in: int = Field(ge=0)
    count_out: int = Field(ge=0)

    def tally(self) -> Tally:
        return Tally(self.line_id, self.class_name, self.direction, count=1)


class LineSettings(Settings):
    margin: float = Field(
        0.01,
        ge=0.0,
        le=0.2,
        description="normalised distance from the line a subject must reach on a side before that side counts; "
        "a subject jittering on the line is counted once",
    )


@dataclass(slots=True)
class _Side:
    sign: int  # +1 right of a->b on screen, -1 left
    point: np.ndarray  # float (2,), where that side was last confirmed


class LineCountRule:
    """One counting line of one camera. `in` is a crossing from the left of a->b to its right,
    as seen on screen (y grows downwards)."""

    def __init__(self, line_id: str, points: np.ndarray, classes: ClassSelector, settings: LineSettings) -> None:
        self.rule_id = line_id
        self._a, self._b = points[0].astype(np.float64), points[1].astype(np.float64)
        self._margin = settings.margin * float(np.linalg.norm(self._b - self._a))
        self._classes = classes
        self._sides: dict[int, _Side] = {}
        self.counts: dict[str, list[int]] = {}  # class name -> [in, out]

    def update(self, tracks: Tracks) -> list[Event]:
        events: list[Event] = []
        rows = np.flatnonzero(self._classes.mask(tracks))
        anchors = tracks.anchors_norm()[rows].astype(np.float64)
        # side_of_line is a cross product scaled by |b - a|; compare against the scaled margin
        sides = side_of_line(anchors, self._a, self._b)
        for row, point, side in zip(rows, anchors, sides):
            if abs(side) <= self._margin:
                continue
            tid = int(tracks.track_id[row])
            sign = 1 if side > 0 else -1
            prev = self._sides.get(tid)
            self._sides[tid] = _Side(sign, point)
            if prev is None or prev.sign == sign:
                continue
            if not segments_cross(prev.point[None], point[None], self._a, self._b)[0]:
                continue  # changed side beyond the ends of the line
            name = self._classes.name(tracks.detections.class_id[row])
            counts = self.counts.setdefault(name, [0, 0])
            direction = "in" if sign > 0 else "out"
            counts[0 if sign > 0 else 1] += 1
            body = LineCountBody(
                line_id=self.rule_id,
                direction=direction,
                class_name=name,
                point=(float(point[0]), float(point[1])),
                count_in=counts[0],
                count_out=counts[1],
            )
            events.append(Event(tracks.camera_id, tracks.pts_ns, body, tid))
        for tid in tracks.ended.tolist():
            self._sides.pop(tid, None)
        return events

    def state_size(self) -> int:
        return len(self._sides)


KIND = Kind(name="line_count", body=LineCountBody, settings=LineSettings, field="counting",
            description="crossing detection settings", build=per_area(LineCountRule), on="line")  # fmt: skip
