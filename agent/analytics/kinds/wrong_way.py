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
    # from walking speed, not fitted: a walker covers about 0.8 of their height a second, and the
    # subject is looked for up to exit_grace_s (1 s) after it was last seen
    relink_heights: float = Field(
        1.0, ge=0.0, le=10.0, description="a new track that appears within this many of a subject's box heights "
        "of where that subject was last seen going the wrong way, while it is unseen and within exit_grace_s, "
        "continues its situation instead of starting another (a track broken by an occlusion is one person); "
        "0: never"
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
    point reached by the minimum distance is wrong way, so a subject that turns around is caught too.
    A situation is keyed by the track that started it; a new track appearing where that subject
    vanished (`relink_heights`) carries it on, with its progress."""

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
        self._relink_heights = settings.relink_heights
        # track id -> (max progress, last seen in zone ns, last anchor and box height in pixels, situation key)
        self._subjects: dict[int, tuple[float, int, np.ndarray, int]] = {}
        self._spells: Spells[int] = Spells(0.0, settings.exit_grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        now = tracks.pts_ns
        anchors = tracks.anchors_norm().astype(np.float64)
        progress = self._progress(anchors)
        xyxy = tracks.detections.xyxy.astype(np.float64)
        # where each subject stands, in pixels, and how tall it is: the relink's scale
        feet = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3], xyxy[:, 3] - xyxy[:, 1]], axis=1)
        rows = np.flatnonzero(in_zone(tracks, self._polygon, self._classes))
        seen = {int(t) for t in tracks.track_id[rows]}
        active = {}
        for row in rows:
            tid = int(tracks.track_id[row])
            best, _, _, key = self._subjects.get(tid) or self._relink(feet[row], seen) or (progress[row], now, None, tid)
            best = max(best, progress[row])
            self._subjects[tid] = (best, now, feet[row], key)
            if best - progress[row] >= self._min_distance:
                name = self._classes.name(tracks.detections.class_id[row])
                active[key] = (name, tuple(anchors[row].tolist()), float(best - progress[row]))
        # a track's end ends its situation, unless another track carries it on
        gone = [subject[3] for tid in tracks.ended.tolist() if (subject := self._subjects.pop(tid, None))]
        for tid, (_, seen_ns, _, _) in list(self._subjects.items()):
            if now - seen_ns > self._grace_ns:
                del self._subjects[tid]
        return self._spells.events(
            tracks,
            active,
            lambda _, state, ms, p: WrongWayBody(
                zone_id=self.rule_id, state=state, class_name=p[0], point=p[1], distance=round(min(p[2], 10000.0), 3),
                unit=self._unit_name, duration_ms=ms,
            ),
            gone=gone,
            subject=lambda key: key,
        )

    def _relink(self, feet: np.ndarray, seen: set[int]) -> tuple[float, int, np.ndarray, int] | None:
        """The state of the nearest subject going the wrong way (its situation started) that is unseen now and
        was last seen within `relink_heights` of its height from `feet` (x, y, height in pixels), taken over by
        the new track; None if there is none."""
        candidates = [
            (float(np.hypot(*(s[2][:2] - feet[:2])) / max(s[2][2], 1.0)), tid) for tid, s in self._subjects.items()
            if tid not in seen and self._spells.is_started(s[3])
        ]  # fmt: skip
        heights, tid = min(candidates, default=(np.inf, None))
        return self._subjects.pop(tid) if tid is not None and heights <= self._relink_heights else None

    def state_size(self) -> int:
        return len(self._subjects) + len(self._spells)


KIND = Kind(name="wrong_way", body=WrongWayBody, settings=WrongWaySettings, field="wrong_way", description="raise wrong-way events (absent: off)",
            build=lambda area, s: WrongWayRule(area.id, area.geometry, area.classes, s, area.ground))  # fmt: skip
