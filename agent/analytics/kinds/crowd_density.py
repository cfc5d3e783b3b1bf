"""Crowd density: persons per m² (or per zone) above a threshold, with hysteresis in value and time."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import ClassSelector, Settings, Spells, in_zone
from agent.analytics.registry import Kind
from agent.core.events import Body, Event, Id, State, Tally
from agent.core.types import Tracks


class CrowdDensityBody(Body):
    """The number of persons in a zone (per m² where the zone declares its area) crossed the threshold."""

    kind: Literal["crowd_density"] = "crowd_density"
    zone_id: Id
    state: State = Field(description="started above the threshold, ended below its release level")
    count: int = Field(ge=0, description="persons in the zone")
    value: float = Field(ge=0.0, le=1000.0, description="persons per m² (unit per_m2) or per zone (unit per_zone)")
    unit: Literal["per_m2", "per_zone"]
    duration_ms: int = Field(ge=0, description="time above the threshold so far (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms, peak=self.count)


class CrowdDensitySettings(Settings):
    area_m2: float | None = Field(
        None, gt=0.0, le=1e6, description="ground area of the zone in m²; absent: density is counted per zone"
    )
    max_per_m2: float = Field(
        2.0, gt=0.0, le=20.0, description="persons per m² that start the situation (2/m²: people start to touch)"
    )
    max_count: int = Field(10, ge=1, le=10000, description="persons in the zone that start it when no area is given")
    release_ratio: float = Field(
        0.8, gt=0.0, lt=1.0, description="the situation ends below this share of the threshold (hysteresis)"
    )
    on_s: float = Field(2.0, ge=0.0, le=600.0, description="time above the threshold before the situation starts")
    off_s: float = Field(3.0, ge=0.0, le=600.0, description="time below the release level before it ends")


class CrowdDensityRule:
    """One zone of one camera. `value` is persons per m² when the zone declares `area_m2`."""

    def __init__(self, zone_id: str, polygon: np.ndarray, classes: ClassSelector, settings: CrowdDensitySettings) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._area_m2 = settings.area_m2
        self._threshold = settings.max_count if settings.area_m2 is None else settings.max_per_m2
        self._release = settings.release_ratio * self._threshold
        self._spells: Spells[str] = Spells(settings.on_s, settings.off_s)

    def density(self, tracks: Tracks) -> tuple[int, float]:
        """(persons in the zone, value in the zone's unit) of one frame."""
        count = int(np.count_nonzero(in_zone(tracks, self._polygon, self._classes)))
        return count, count if self._area_m2 is None else count / self._area_m2

    def update(self, tracks: Tracks) -> list[Event]:
        count, value = self.density(tracks)
        level = self._release if self._spells.is_started(self.rule_id) else self._threshold
        active = {self.rule_id: (count, value)} if value >= level else {}
        unit = "per_zone" if self._area_m2 is None else "per_m2"

        def body(_: str, state: str, ms: int, started_with: tuple[int, float]) -> CrowdDensityBody:
            # the ended event reports the value that ended it, the started one the value that started it
            n, v = (count, value) if state == "ended" else started_with
            return CrowdDensityBody(zone_id=self.rule_id, state=state, count=n, value=round(v, 3), unit=unit, duration_ms=ms)

        return self._spells.events(tracks, active, body)

    def state_size(self) -> int:
        return len(self._spells)


KIND = Kind(
    name="crowd_density", body=CrowdDensityBody, settings=CrowdDensitySettings, field="crowd_density",
    description="raise crowd density events (absent: off)",
    build=lambda area, s: CrowdDensityRule(area.id, area.geometry, area.classes.only({"person"}), s),
)  # fmt: skip
