"""Abandoned object: an object (a bag-class track, or a static foreground region) still,
with no person within a radius, for a time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import ClassSelector, Settings, Spells, TrackHistory, box_norm
from agent.analytics.registry import Area, Kind
from agent.core.events import Body, Box, Event, Id, State, Tally
from agent.core.geometry import points_in_polygon
from agent.core.types import Tracks

if TYPE_CHECKING:  # the analyzer (OpenCV) is built by the camera, not imported with the kinds
    from agent.analytics.analyzers.static import StaticAnalyzer


class AbandonedObjectBody(Body):
    """An object stayed still with no person near it for at least the zone's time."""

    kind: Literal["abandoned_object"] = "abandoned_object"
    zone_id: Id
    state: State = Field(description="started once unattended long enough, ended when the object is gone or attended")
    source: Literal["detection", "foreground"] = Field(description="a detected object class or a static foreground region")
    box: Box = Field(description="the object's box")
    duration_ms: int = Field(ge=0, description="time unattended so far (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms)


class AbandonedSettings(Settings):
    unattended_s: float = Field(
        10.0, ge=0.0, le=3600.0, description="time an object must stay still with nobody near before the event"
    )
    owner_radius: float = Field(
        0.1, ge=0.0, le=1.0, description="a person whose box comes this close to the object (normalised "
        "frame units) attends it"
    )
    still_speed: float = Field(
        0.01, gt=0.0, le=1.0, description="a detected object slower than this (normalised units per s) is still"
    )
    match_iou: float = Field(0.3, gt=0.0, le=1.0, description="IoU that makes two samples' static regions one object")
    grace_s: float = Field(
        3.0, ge=0.0, le=600.0, description="time an object may be unseen or attended before the situation ends"
    )


class AbandonedRule:
    """One zone of one camera. Objects are keyed ("detection", track id) or ("foreground", n),
    where static regions keep their key from one sample to the next by IoU."""

    def __init__(
        self,
        zone_id: str,
        polygon: np.ndarray,
        objects: ClassSelector,
        persons: ClassSelector,
        analyzer: StaticAnalyzer | None,
        settings: AbandonedSettings,
    ) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._objects = objects
        self._persons = persons
        self._analyzer = analyzer
        self._s = settings
        self._history = TrackHistory(1.0)
        self._regions: dict[int, np.ndarray] = {}  # foreground key -> normalised box float (4,)
        self._next_key = 0
        self._spells: Spells[tuple[str, int]] = Spells(settings.unattended_s, settings.grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        w, h = tracks.size_wh
        person_boxes = tracks.detections.xyxy[self._persons.mask(tracks)] / np.array([w, h, w, h], np.float32)
        candidates = {**self._still_detections(tracks), **self._static_regions()}
        active = {
            key: box
            for key, box in candidates.items()
            if points_in_polygon(_centre(box)[None], self._polygon)[0] and _nearest(box, person_boxes) > self._s.owner_radius
        }
        return self._spells.events(
            tracks,
            active,
            lambda key, state, ms, box: AbandonedObjectBody(
                zone_id=self.rule_id, state=state, source=key[0], box=tuple(box), duration_ms=ms
            ),
            gone=[("detection", t) for t in tracks.ended.tolist()],
            subject=lambda key: key[1] if key[0] == "detection" else None,
        )

    def _still_detections(self, tracks: Tracks) -> dict[tuple[str, int], np.ndarray]:
        rows = np.flatnonzero(self._objects.mask(tracks))
        self._history.update(tracks, rows)
        out = {}
        for r in rows.tolist():
            v = self._history.velocity(int(tracks.track_id[r]))
            if v is not None and np.hypot(*v) < self._s.still_speed:
                out[("detection", int(tracks.track_id[r]))] = np.asarray(box_norm(tracks.detections.xyxy[r], tracks.size_wh))
        return out

    def _static_regions(self) -> dict[tuple[str, int], np.ndarray]:
        if self._analyzer is None:
            return {}
        regions: dict[int, np.ndarray] = {}
        for box in self._analyzer.boxes:
            key = max(self._regions, key=lambda k: _iou(self._regions[k], box), default=None)
            if key is None or key in regions or _iou(self._regions[key], box) < self._s.match_iou:
                key, self._next_key = self._next_key, self._next_key + 1
            regions[key] = box
        self._regions = regions
        return {("foreground", k): b for k, b in regions.items()}

    def state_size(self) -> int:
        return len(self._history) + len(self._regions) + len(self._spells)


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)


def _nearest(box: np.ndarray, others: np.ndarray) -> float:
    """Smallest gap between `box` float (4,) and any of `others` float (K, 4); 0 when they overlap; inf when K = 0."""
    if len(others) == 0:
        return float("inf")
    dx = np.maximum(0.0, np.maximum(others[:, 0] - box[2], box[0] - others[:, 2]))
    dy = np.maximum(0.0, np.maximum(others[:, 1] - box[3], box[1] - others[:, 3]))
    return float(np.hypot(dx, dy).min())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _build(area: Area, settings: AbandonedSettings) -> AbandonedRule:
    objects, persons = area.classes.only({"person"}, exclude=True), area.classes.only({"person"})
    return AbandonedRule(area.id, area.geometry, objects, persons, area.analyzers.get("static"), settings)


KIND = Kind(
    name="abandoned_object", body=AbandonedObjectBody, settings=AbandonedSettings, field="abandoned", build=_build,
    description="raise abandoned-object events (absent: off); objects are the zone's non-person classes and static "
    "foreground regions, and 'person' must be among the classes so owners are seen",
    requires=frozenset({"person"}),
)  # fmt: skip
