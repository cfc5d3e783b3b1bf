"""Wrong way: a subject in a zone moves against the zone's allowed direction for at least a distance."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from agent.analytics.base import ClassSelector, Settings, Spells, in_zone
from agent.analytics.registry import Kind, per_area
from agent.core.events import Body, ClassName, Event, Id, Point, State, Tally
from agent.core.types import Tracks
from agent.core.units import NS_PER_S


class WrongWayBody(Body):
    """A subject moved against the zone's allowed direction for at least the zone's distance."""

    kind: Literal["wrong_way"] = "wrong_way"
    zone_id: Id
    state: State = Field(description="started once the distance is covered, ended when the subject leaves or is lost")
    class_name: ClassName
    point: Point = Field(description="anchor point (bottom centre of the box)")
    distance: float = Field(ge=0.0, le=2.0, description="normalised distance covered against the allowed direction")
    duration_ms: int = Field(ge=0, description="time since the subject started going the wrong way")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms, self.class_name)


class WrongWaySettings(Settings):
    direction: tuple[float, float] = Field(
        description="allowed direction of travel as a normalised (dx, dy) vector on screen; y grows downwards"
    )
    min_distance: float = Field(
        0.1, gt=0.0, le=2.0, description="distance against the direction (normalised frame units) that makes a "
        "subject wrong-way; a step of a standing person or box jitter stays well below 0.05"
    )
    exit_grace_s: float = Field(
        1.0, ge=0.0, le=60.0, description="time outside the zone (or unseen) before the situation ends"
    )

    @field_validator("direction")
    @classmethod
    def _not_zero(cls, v: tuple[float, float]) -> tuple[float, float]:
        if np.hypot(*v) < 1e-6:
            raise ValueError("direction must be a non-zero vector")
        return v


class WrongWayRule:
    """One zone of one camera. A subject's progress is its anchor projected on the allowed
    direction; going backwards from the furthest point reached by `min_distance` is wrong way,
    so a subject that turns around is caught too."""

    def __init__(self, zone_id: str, polygon: np.ndarray, classes: ClassSelector, settings: WrongWaySettings) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._unit = np.asarray(settings.direction, np.float64) / np.hypot(*settings.direction)
        self._min_distance = settings.min_distance
        self._grace_ns = int(settings.exit_grace_s * NS_PER_S)
        self._furthest: dict[int, tuple[float, int]] = {}  # track id -> (max progress, last seen in zone ns)
        self._spells: Spells[int] = Spells(0.0, settings.exit_grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        now = tracks.pts_ns
        anchors = tracks.anchors_norm().astype(np.float64)
        progress = anchors @ self._unit
        active = {}
        for row in np.flatnonzero(in_zone(tracks, self._polygon, self._classes)):
            tid = int(tracks.track_id[row])
            best = max(self._furthest.get(tid, (progress[row], now))[0], progress[row])
            self._furthest[tid] = (best, now)
            if best - progress[row] >= self._min_distance:
                name = self._classes.name(tracks.detections.class_id[row])
                active[tid] = (name, tuple(anchors[row].tolist()), float(best - progress[row]))
        ended = tracks.ended.tolist()
        for tid in ended:
            self._furthest.pop(tid, None)
        for tid, (_, seen_ns) in list(self._furthest.items()):
            if now - seen_ns > self._grace_ns:
                del self._furthest[tid]
        return self._spells.events(
            tracks,
            active,
            lambda _, state, ms, p: WrongWayBody(
                zone_id=self.rule_id, state=state, class_name=p[0], point=p[1], distance=min(p[2], 2.0), duration_ms=ms
            ),
            gone=ended,
            subject=lambda tid: tid,
        )

    def state_size(self) -> int:
        return len(self._furthest) + len(self._spells)


KIND = Kind(name="wrong_way", body=WrongWayBody, settings=WrongWaySettings, field="wrong_way", description="raise wrong-way events (absent: off)",
            build=per_area(WrongWayRule))  # fmt: skip
