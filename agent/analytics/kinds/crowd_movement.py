"""Crowd movement: the subjects of a zone suddenly move much faster, together, than their recent baseline."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import ClassSelector, Settings, Spells, TrackHistory, in_zone
from agent.analytics.registry import Kind
from agent.core.events import Body, Event, Id, State, Tally
from agent.core.ground import GroundPlane
from agent.core.types import Tracks
from agent.core.units import NS_PER_S


class CrowdMovementBody(Body):
    """The subjects of a zone suddenly moved much faster together than their recent baseline."""

    kind: Literal["crowd_movement"] = "crowd_movement"
    zone_id: Id
    state: State = Field(description="started at the sudden change, ended when the motion is back to the baseline")
    count: int = Field(ge=0, description="moving subjects in the zone")
    value: float = Field(ge=0.0, le=1000.0, description="speed now over the baseline speed (a ratio)")
    speed_mps: float | None = Field(
        None, ge=0.0, le=1000.0, description="the median speed now on the ground in m/s (when the camera has a "
        "ground calibration)"
    )
    duration_ms: int = Field(ge=0, description="time since the change (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms, peak=self.count)


class CrowdMovementSettings(Settings):
    ratio: float = Field(
        2.5, gt=1.0, le=100.0, description="median speed over the baseline speed that starts the situation; "
        "walking groups on vtest vary by up to 1.6x"
    )
    release_ratio: float = Field(1.5, gt=0.0, le=100.0, description="the situation ends below this ratio")
    min_tracks: int = Field(3, ge=1, le=1000, description="moving subjects needed in the zone: a crowd, not one runner")
    speed_window_s: float = Field(1.0, gt=0.0, le=10.0, description="window over which each subject's speed is measured")
    baseline_s: float = Field(
        20.0, gt=0.0, le=3600.0, description="time constant of the baseline speed; a new pace held this long becomes normal"
    )
    warmup_s: float = Field(5.0, ge=0.0, le=600.0, description="baseline observed this long before the rule can fire")
    min_speed: float = Field(
        0.01, gt=0.0, le=10.0, description="floor of the baseline (normalised frame units per s), so people "
        "standing still then walking off do not count as a sudden movement"
    )
    min_speed_mps: float = Field(
        0.3, gt=0.0, le=20.0, description="the same floor in m/s, used instead when the camera has a ground "
        "calibration (a slow walk is about 1 m/s)"
    )
    on_s: float = Field(0.5, ge=0.0, le=60.0, description="time above the ratio before the situation starts")
    off_s: float = Field(3.0, ge=0.0, le=600.0, description="time below the release ratio before it ends")


class CrowdMovementRule:
    """One zone of one camera. The baseline is an exponential average of the zone's median speed
    in time (weights from `pts_ns`), so it means the same at any frame rate."""

    def __init__(
        self, zone_id: str, polygon: np.ndarray, classes: ClassSelector, settings: CrowdMovementSettings,
        ground: GroundPlane | None = None,
    ) -> None:  # fmt: skip
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._s = settings
        # with a ground calibration, speeds are measured on the ground, in m/s
        self._history = TrackHistory(settings.speed_window_s, None if ground is None else ground.to_m)
        self._mps = ground is not None
        self._min_speed = settings.min_speed_mps if self._mps else settings.min_speed
        self._baseline: float | None = None
        self._observed_ns = 0
        self._last_ns: int | None = None
        self._spells: Spells[str] = Spells(settings.on_s, settings.off_s)

    def median_speed(self, tracks: Tracks) -> tuple[int, float | None]:
        """(subjects with a speed, their median speed in normalised units per s, or m/s) after this frame."""
        rows = np.flatnonzero(in_zone(tracks, self._polygon, self._classes))
        self._history.update(tracks, rows)
        speeds = [np.hypot(*v) for r in rows.tolist() if (v := self._history.velocity(int(tracks.track_id[r]))) is not None]
        return len(speeds), (float(np.median(speeds)) if speeds else None)

    def update(self, tracks: Tracks) -> list[Event]:
        now = tracks.pts_ns
        n, speed = self.median_speed(tracks)
        dt_s = 0.0 if self._last_ns is None else (now - self._last_ns) / NS_PER_S
        self._last_ns = now
        active: dict[str, tuple[int, float, float | None]] = {}
        if n >= self._s.min_tracks and speed is not None:
            if self._baseline is not None and self._observed_ns >= self._s.warmup_s * NS_PER_S:
                ratio = speed / max(self._baseline, self._min_speed)
                level = self._s.release_ratio if self._spells.is_started(self.rule_id) else self._s.ratio
                if ratio >= level:
                    active[self.rule_id] = (n, ratio, round(min(speed, 1000.0), 2) if self._mps else None)
            self._observed_ns += int(dt_s * NS_PER_S)
            weight = min(dt_s / self._s.baseline_s, 1.0)
            self._baseline = speed if self._baseline is None else self._baseline + weight * (speed - self._baseline)
        return self._spells.events(
            tracks,
            active,
            lambda _, state, ms, p: CrowdMovementBody(
                zone_id=self.rule_id, state=state, count=p[0], value=round(min(p[1], 1000.0), 2), speed_mps=p[2],
                duration_ms=ms,
            ),
        )

    def state_size(self) -> int:
        # the baseline is a fixed-size summary, not per-subject state
        return len(self._history) + len(self._spells)


KIND = Kind(name="crowd_movement", body=CrowdMovementBody, settings=CrowdMovementSettings, field="crowd_movement", description="raise crowd movement events (absent: off)",
            build=lambda area, s: CrowdMovementRule(area.id, area.geometry, area.classes, s, area.ground))  # fmt: skip
