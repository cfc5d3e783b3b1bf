"""Loitering: a watched subject stays in a zone longer than a dwell time."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.core.events import Event, LoiteringBody
from agent.analytics.base import ClassSelector, Spells, in_zone
from agent.core.types import Tracks


class LoiteringSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dwell_s: float = Field(
        20.0, ge=1.0, le=86400.0, description="time in the zone before loitering starts; people crossing the "
        "vtest plaza take 5-15 s, so 20 s flags only those who stay"
    )
    exit_grace_s: float = Field(
        2.0, ge=0.0, le=60.0, description="time outside (or unseen) before loitering ends; absorbs missed detections"
    )


class LoiteringRule:
    """One zone of one camera; one started/ended pair per subject that stays."""

    def __init__(self, zone_id: str, polygon: np.ndarray, classes: ClassSelector, settings: LoiteringSettings) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._spells: Spells[int] = Spells(settings.dwell_s, settings.exit_grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        anchors = tracks.anchors_norm()
        active = {
            int(tracks.track_id[row]): (self._classes.name(tracks.detections.class_id[row]), tuple(anchors[row].tolist()))
            for row in np.flatnonzero(in_zone(tracks, self._polygon, self._classes))
        }
        return self._spells.events(
            tracks,
            active,
            lambda _, state, ms, p: LoiteringBody(
                zone_id=self.rule_id, state=state, class_name=p[0], point=p[1], duration_ms=ms
            ),
            gone=tracks.ended.tolist(),
            subject=lambda tid: tid,
        )

    def state_size(self) -> int:
        return len(self._spells)
