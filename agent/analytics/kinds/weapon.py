"""Weapon: a detection of a class that the model's class map marks as a weapon, persisting.

COCO models know only `knife` (mapped to "weapon"); real use needs a weapon
model delivered by OTA, whose class map marks its classes "weapon".
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import ClassSelector, Settings, Spells, box_norm, in_zone
from agent.analytics.registry import Kind
from agent.core.events import Body, Box, ClassName, Event, Id, State, Tally
from agent.core.types import Tracks


class WeaponBody(Body):
    """A detection of a class that the model's class map marks as a weapon persisted."""

    kind: Literal["weapon"] = "weapon"
    zone_id: Id
    state: State = Field(description="started once the detection persisted, ended when it is no longer seen")
    class_name: ClassName
    box: Box = Field(description="the detection's box")
    duration_ms: int = Field(ge=0, description="time seen so far (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms, self.class_name)


class WeaponSettings(Settings):
    persist_s: float = Field(
        0.5, ge=0.0, le=60.0, description="time a weapon track must persist before the event starts; "
        "the tracker already drops one-frame detections, this drops flickers of a few frames"
    )
    min_confidence: float = Field(0.4, ge=0.0, le=1.0, description="detections below this score do not count")
    exit_grace_s: float = Field(1.0, ge=0.0, le=60.0, description="time unseen before the situation ends")


class WeaponRule:
    """One zone of one camera: one started/ended pair per weapon track."""

    def __init__(self, zone_id: str, polygon: np.ndarray, classes: ClassSelector, settings: WeaponSettings) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._min_confidence = settings.min_confidence
        self._spells: Spells[int] = Spells(settings.persist_s, settings.exit_grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        det = tracks.detections
        rows = np.flatnonzero(in_zone(tracks, self._polygon, self._classes) & (det.confidence >= self._min_confidence))
        active = {
            int(tracks.track_id[r]): (self._classes.name(det.class_id[r]), box_norm(det.xyxy[r], tracks.size_wh))
            for r in rows.tolist()
        }
        return self._spells.events(
            tracks,
            active,
            lambda _, state, ms, p: WeaponBody(zone_id=self.rule_id, state=state, class_name=p[0], box=p[1], duration_ms=ms),
            gone=tracks.ended.tolist(),
            subject=lambda tid: tid,
        )

    def state_size(self) -> int:
        return len(self._spells)


KIND = Kind(
    name="weapon", body=WeaponBody, settings=WeaponSettings, field="weapon",
    description="raise weapon events for the zone's classes mapped to 'weapon' (absent: off)",
    build=lambda area, s: WeaponRule(area.id, area.geometry, area.classes.only({"weapon"}), s),
)  # fmt: skip
