"""Wrong way: a subject in a zone moves against the zone's allowed direction for at least a distance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from agent.analytics.base import ClassSelector, Settings, Spells, in_zone
from agent.analytics.registry import Kind
from agent.core.events import Body, ClassName, Event, Id, Point, State, Tally
from agent.core.ground import GroundPlane, required
from agent.core.types import Tracks
from agent.core.units import NS_PER_S


class WrongWayBody(Body):
    """A subject moved against the zone's allowed direction for at least the zone's distance."""

    kind: Literal["wrong_way"] = "wrong_way"
    zone_id: Id
    state: State = Field(description="started once the distance is covered, ended when the subject leaves or is lost")
    class_name: ClassName
    point: Point = Field(description="anchor point (bottom centre of the box)")
    distance: float = Field(
        ge=0.0, le=10000.0, description="distance covered against the allowed direction, in `unit`: normalised frame "
        "units, or metres on the ground where the zone sets min_distance_m"
    )
    unit: Literal["frame", "m"] = "frame"
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
    min_distance_m: float | None = Field(
        None, gt=0.0, le=1000.0, description="the distance in metres on the ground instead (the camera needs a "
        "ground calibration in the zones document); absent: min_distance"
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
    direction (on the ground, in metres, with `min_distance_m`); going backwards from the furthest
    point reached by the minimum distance is wrong way, so a subject that turns around is caught too."""

    def __init__(
        self, zone_id: str, polygon: np.ndarray, classes: ClassSelector, settings: WrongWaySettings,
        ground: GroundPlane | None = None,
    ) -> None:  # fmt: skip
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        unit = np.asarray(settings.direction, np.float64) / np.hypot(*settings.direction)
        self._min_distance, self._unit_name = settings.min_distance, "frame"
        self._progress: Callable[[np.ndarray], np.ndarray] = lambda anchors: anchors @ unit
        if settings.min_distance_m is not None:
            plane = required(ground, zone_id, "wrong_way.min_distance_m", "min_distance")
            # progress in metres along the allowed direction as it lies on the ground at the zone's centre
            centre = np.asarray(polygon, np.float64).mean(axis=0)
            step = plane.to_m(np.stack([centre, centre + 0.01 * unit]))
            unit_m = (step[1] - step[0]) / np.linalg.norm(step[1] - step[0])
            self._progress = lambda anchors: plane.to_m(anchors) @ unit_m
            self._min_distance, self._unit_name = settings.min_distance_m, "m"
        self._grace_ns = int(settings.exit_grace_s * NS_PER_S)
        self._furthest: dict[int, tuple[float, int]] = {}  # track id -> (max progress, last seen in zone ns)
        self._spells: Spells[int] = Spells(0.0, settings.exit_grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        now = tracks.pts_ns
        anchors = tracks.anchors_norm().astype(np.float64)
        progress = self._progress(anchors)
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
                zone_id=self.rule_id, state=state, class_name=p[0], point=p[1], distance=round(min(p[2], 10000.0), 3),
                unit=self._unit_name, duration_ms=ms,
            ),
            gone=ended,
            subject=lambda tid: tid,
        )

    def state_size(self) -> int:
        return len(self._furthest) + len(self._spells)


KIND = Kind(name="wrong_way", body=WrongWayBody, settings=WrongWaySettings, field="wrong_way", description="raise wrong-way events (absent: off)",
            build=lambda area, s: WrongWayRule(area.id, area.geometry, area.classes, s, area.ground))  # fmt: skip
