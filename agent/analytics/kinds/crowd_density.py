"""Crowd density: persons per m² (or per zone) above a threshold, with hysteresis in value and time.

The count is what is seen now, not confirmed tracks (agent/analytics/crowd.py); a zone with a
`crowded` block is also detected on tiles and may count by its crowd's foreground area."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.analytics.base import Settings, Spells
from agent.analytics.crowd import SMOOTH_S, CrowdedSettings, Estimate, ZoneCount
from agent.analytics.registry import Area, Kind
from agent.core.events import Body, Event, Id, State, Tally
from agent.core.types import Tracks


class CrowdDensityBody(Body):
    """The persons in a zone, per m² of its ground area where known (else per zone), crossed the threshold."""

    kind: Literal["crowd_density"] = "crowd_density"
    zone_id: Id
    state: State = Field(description="started above the threshold, ended below its release level")
    count: int = Field(ge=0, le=100000, description="persons in the zone")
    area_m2: float | None = Field(
        None, ge=0.0, le=1e6, description="the zone's ground area in m² (its setting, or its camera's ground "
        "calibration); null when neither gives it"
    )
    density: float = Field(ge=0.0, le=100000.0, description="persons per m² (unit per_m2) or per zone (unit per_zone)")
    unit: Literal["per_m2", "per_zone"]
    estimate: Estimate = Field(
        description="where the count comes from: detections (boxes seen now, smoothed) or area (the crowd's "
        "foreground area normalised by perspective, where people are too small or packed for boxes)"
    )
    duration_ms: int = Field(ge=0, description="time above the threshold so far (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms, peak=self.count)


class CrowdDensitySettings(Settings):
    area_m2: float | None = Field(
        None, gt=0.0, le=1e6, description="ground area of the zone in m²; absent: from the camera's ground "
        "calibration, else density is counted per zone"
    )
    max_per_m2: float = Field(
        2.0, gt=0.0, le=20.0, description="persons per m² that start the situation. Published levels as a "
        "starting point: 2/m² people start to touch (free walking ends), 4/m² very dense (movement restricted), "
        "5/m² and more dangerous (crowd crush risk)"
    )
    max_count: int = Field(10, ge=1, le=10000, description="persons in the zone that start it when no area is known")
    release_ratio: float = Field(
        0.8, gt=0.0, lt=1.0, description="the situation ends below this share of the threshold (hysteresis)"
    )
    on_s: float = Field(2.0, ge=0.0, le=600.0, description="time above the threshold before the situation starts")
    off_s: float = Field(3.0, ge=0.0, le=600.0, description="time below the release level before it ends")
    smooth_s: float = Field(
        SMOOTH_S, ge=0.0, le=60.0, description="the count is the mean of the persons seen at the detected frames of "
        "this last window (what is seen now, not confirmed tracks)"
    )
    crowded: CrowdedSettings | None = Field(
        None, description="crowded mode for dense zones: tiles at a higher resolution and the area estimate "
        "(absent: boxes of the whole frame only)"
    )


class CrowdDensityRule:
    """One zone of one camera. The count is what is seen now (`ZoneCount`); the density is per m² when the
    zone's area is known. `tiles`: (zone polygon, zoom) when the zone asks the frame loop for tiles."""

    def __init__(self, area: Area, settings: CrowdDensitySettings) -> None:
        self.rule_id = area.id
        crowded = settings.crowded
        self.tiles = None if crowded is None else (area.geometry, crowded.zoom)
        self._edges = area.analyzers.get("crowd") if crowded is not None and crowded.area_estimate else None
        person = area.classes.only({"person"})
        self.counter = ZoneCount(area.geometry, person.class_ids, settings.smooth_s, self._edges is not None)
        self._area_m2 = settings.area_m2
        if self._area_m2 is None and area.ground is not None:
            self._area_m2 = area.ground.area_m2(area.geometry)
        self._threshold = settings.max_count if self._area_m2 is None else settings.max_per_m2
        self._release = settings.release_ratio * self._threshold
        self._spells: Spells[str] = Spells(settings.on_s, settings.off_s)

    def update(self, tracks: Tracks) -> list[Event]:
        self.counter.update(tracks, None if self._edges is None else self._edges.edges)
        count, estimate = self.counter.count, self.counter.estimate
        value = count if self._area_m2 is None else count / self._area_m2
        level = self._release if self._spells.is_started(self.rule_id) else self._threshold
        active = {self.rule_id: (count, value, estimate)} if value >= level else {}
        unit = "per_zone" if self._area_m2 is None else "per_m2"
        area = None if self._area_m2 is None else round(self._area_m2, 2)

        def body(_: str, state: str, ms: int, started_with: tuple[int, float, Estimate]) -> CrowdDensityBody:
            # the ended event reports the value that ended it, the started one the value that started it
            n, v, e = (count, value, estimate) if state == "ended" else started_with
            return CrowdDensityBody(zone_id=self.rule_id, state=state, count=n, area_m2=area, density=round(v, 3),
                                    unit=unit, estimate=e, duration_ms=ms)  # fmt: skip

        return self._spells.events(tracks, active, body)

    def state_size(self) -> int:
        return len(self._spells)


KIND = Kind(
    name="crowd_density", body=CrowdDensityBody, settings=CrowdDensitySettings, field="crowd_density",
    description="raise crowd density events (absent: off)",
    build=CrowdDensityRule,
)  # fmt: skip
