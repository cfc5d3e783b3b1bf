"""Fire: flames in a zone from the colour + flicker analyzer and/or a fire class of the model, persisting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import ClassSelector, Settings, Spells, box_norm, in_zone
from agent.analytics.registry import Area, Kind
from agent.core.events import Body, Box, Event, Id, State, Tally
from agent.core.geometry import polygon_mask
from agent.core.types import Tracks

if TYPE_CHECKING:  # the analyzer (OpenCV) is built by the camera, not imported with the kinds
    from agent.analytics.analyzers.fire import FireAnalyzer

FIRE_CATEGORIES = {"fire", "smoke"}


class FireBody(Body):
    """Flames seen in a zone (fire-coloured flickering pixels, or a fire class of the model) persisted."""

    kind: Literal["fire"] = "fire"
    zone_id: Id
    state: State = Field(description="started once the flames persisted, ended when they are gone")
    source: Literal["colour", "detection"] = Field(description="colour + flicker analysis or a fire class of the model")
    box: Box = Field(description="box around the flames seen last")
    value: float = Field(ge=0.0, le=1.0, description="share of the zone covered by flames")
    duration_ms: int = Field(ge=0, description="time burning so far (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms)


class FireSettings(Settings):
    min_area: float = Field(
        0.0008, gt=0.0, le=1.0, description="share of the zone that must look like fire; a zone over the "
        "whole frame: about 16 pixels of a 192-pixel-wide analysis frame, a small flame at 10 m"
    )
    # measured with the analyzer's 0.5 s time constants at 10 analyses/s: FURG house6 fire
    # starts at 2.9 s; no fire on vtest (red tape with people passing behind), ABODA or
    # the four Le2i clips. At 1.0 s vtest's tape raised fire; the margin is thin.
    persist_s: float = Field(
        1.2, ge=0.0, le=600.0, description="time the flames must persist before fire starts; flame-coloured "
        "motion on the non-fire clips (red tape with people passing behind) lasts about 1.0 s"
    )
    gap_s: float = Field(
        0.5, ge=0.0, le=60.0, description="a gap in the flames longer than this, before fire starts, restarts "
        "the persistence count (at least one analysis interval)"
    )
    off_s: float = Field(5.0, ge=0.0, le=600.0, description="time without flames before fire ends")


class FireRule:
    """One zone of one camera. The zone mask is rasterised once per analysis size."""

    def __init__(
        self,
        zone_id: str,
        polygon: np.ndarray,
        classes: ClassSelector,
        analyzer: FireAnalyzer,
        settings: FireSettings,
    ) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._analyzer = analyzer
        self._min_area = settings.min_area
        self._zone_mask: np.ndarray | None = None
        self._spells: Spells[str] = Spells(settings.persist_s, settings.off_s, settings.gap_s)

    def _from_colour(self) -> tuple[str, tuple, float] | None:
        mask = self._analyzer.mask
        if mask is None:
            return None
        if self._zone_mask is None or self._zone_mask.shape != mask.shape:
            self._zone_mask = polygon_mask(self._polygon, mask.shape)
        fire = mask & self._zone_mask
        share = float(np.count_nonzero(fire)) / max(int(np.count_nonzero(self._zone_mask)), 1)
        if share < self._min_area:
            return None
        ys, xs = np.nonzero(fire)
        h, w = mask.shape
        return "colour", (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h), share

    def _from_detections(self, tracks: Tracks) -> tuple[str, tuple, float] | None:
        rows = np.flatnonzero(in_zone(tracks, self._polygon, self._classes))
        if len(rows) == 0:
            return None
        xyxy = tracks.detections.xyxy[rows]
        box = np.concatenate([xyxy[:, :2].min(axis=0), xyxy[:, 2:].max(axis=0)])
        return "detection", box_norm(box, tracks.size_wh), 0.0

    def update(self, tracks: Tracks) -> list[Event]:
        seen = self._from_detections(tracks) or self._from_colour()
        active = {self.rule_id: seen} if seen is not None else {}
        return self._spells.events(
            tracks,
            active,
            lambda _, state, ms, p: FireBody(
                zone_id=self.rule_id, state=state, source=p[0], box=p[1], value=round(min(p[2], 1.0), 4), duration_ms=ms
            ),
        )

    def state_size(self) -> int:
        return len(self._spells)


def _build(area: Area, settings: FireSettings) -> FireRule:
    return FireRule(area.id, area.geometry, area.classes.only(FIRE_CATEGORIES), area.analyzers.get("fire"), settings)


KIND = Kind(
    name="fire", body=FireBody, settings=FireSettings, field="fire", build=_build,
    description="raise fire events from the colour analyzer and the zone's fire/smoke classes (absent: off)",
)  # fmt: skip
