"""Abandoned object: an object still, with no person near it, for a time, and a story behind it.

Two sources. A bag-class track still for long enough with nobody near (`detected_bag`). A
static foreground region (something new that stays still) counts only when it has an owner
who left: persons near it when it appeared (found in the recent tracks) of whom one was later
seen away from it (`owner_left`). That rules out what appears with nobody there (lighting
changes, shadows, a car's headlights), what was there at the start (it is background; a
ghost of what left is dropped by the analyzer) and a person who lies down and stays still:
the region appears under that person, who never walks away from it, and is as big as a
person (`person_down`'s, never an abandoned object).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import ClassSelector, Settings, Spells, TrackHistory, box_norm
from agent.analytics.registry import Area, Kind
from agent.core.events import Body, Box, Event, Id, State, Tally
from agent.core.geometry import points_in_polygon
from agent.core.ground import GroundPlane, required
from agent.core.types import Tracks
from agent.core.units import NS_PER_S
from engines.nms import iou_matrix

HELD_BACK_MAX_S = 30.0  # a static region reported this long after it first counted as static still finds its owners

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
    reasons: list[Literal["detected_bag", "static_region", "owner_left"]] = Field(
        min_length=1, max_length=3, description="the evidence that held: `detected_bag` (a still bag-class "
        "detection), or `static_region` and `owner_left` (a new still region whose owner was seen walking away)",
    )

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms)


class AbandonedSettings(Settings):
    unattended_s: float = Field(
        10.0, ge=0.0, le=3600.0, description="time an object must stay still with nobody near before the event"
    )
    owner_radius: float = Field(
        0.1, ge=0.0, le=1.0, description="a person whose box comes this close to the object (normalised "
        "frame units) attends it; the persons this close when a static region appears are its owners"
    )
    owner_radius_m: float | None = Field(
        None, gt=0.0, le=100.0, description="the radius in metres on the ground instead, between the object's and "
        "the person's feet (the camera needs a ground calibration in the zones document); absent: owner_radius"
    )
    owner_lookback_s: float = Field(
        4.0, ge=0.0, le=60.0, description="how far back before a static region first counted as static its owners "
        "are looked for (the analyzer counts a region once it has been still for its still_s, 3 s by default, and "
        "may report it later while its outline looks like a ghost's: up to 30 s later it still finds its owners)"
    )
    person_size: float = Field(
        0.5, gt=0.0, le=10.0, description="a static region at least this share of its largest owner's box area is "
        "that person lying still, never an abandoned object"
    )
    still_speed: float = Field(
        0.01, gt=0.0, le=1.0, description="a detected object slower than this (normalised units per s) is still"
    )
    match_iou: float = Field(0.3, gt=0.0, le=1.0, description="IoU that makes two samples' static regions one object")
    grace_s: float = Field(
        3.0, ge=0.0, le=600.0, description="time an object may be unseen or attended before the situation ends"
    )


@dataclass(slots=True)
class _Region:
    """A static region followed from sample to sample: its box, when it was last reported, who was near it
    when it appeared, the largest of their boxes then, and whether one of them was seen away from it since."""

    box: np.ndarray
    seen_ns: int
    owners: set[int]
    owner_area: float
    owner_left: bool = False


class AbandonedRule:
    """One zone of one camera. Objects are keyed ("detection", track id) or ("foreground", n), where static
    regions keep their key (and story) by IoU, also across a gap of up to `grace_s` in the analyzer's output."""

    def __init__(
        self,
        zone_id: str,
        polygon: np.ndarray,
        objects: ClassSelector,
        persons: ClassSelector,
        analyzer: StaticAnalyzer | None,
        settings: AbandonedSettings,
        ground: GroundPlane | None = None,
    ) -> None:
        self.rule_id = zone_id
        self._ground: GroundPlane | None = None  # set: owner distances on the ground, in metres
        self._radius = settings.owner_radius
        if settings.owner_radius_m is not None:
            self._ground = required(ground, zone_id, "abandoned.owner_radius_m", "owner_radius")
            self._radius = settings.owner_radius_m
        self._polygon = polygon
        self._objects = objects
        self._persons = persons
        self._analyzer = analyzer
        self._s = settings
        self._history = TrackHistory(1.0)
        self._people_ns = (settings.owner_lookback_s + HELD_BACK_MAX_S) * NS_PER_S  # how long recent persons are kept
        self._people: deque[tuple[int, np.ndarray, np.ndarray]] = deque()  # (pts_ns, track ids, boxes), recent persons
        self._regions: dict[int, _Region] = {}
        self._next_key = 0
        self._spells: Spells[tuple[str, int]] = Spells(settings.unattended_s, settings.grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        w, h = tracks.size_wh
        rows = self._persons.mask(tracks)
        ids, person_boxes = tracks.track_id[rows], tracks.detections.xyxy[rows] / np.array([w, h, w, h], np.float32)
        if len(ids) and self._analyzer is not None:  # for the owners of static regions
            self._people.append((tracks.pts_ns, ids, person_boxes))
        while self._people and tracks.pts_ns - self._people[0][0] > self._people_ns:
            self._people.popleft()
        candidates = {**self._still_detections(tracks), **self._left_regions(tracks.pts_ns, ids, person_boxes)}
        active = {
            key: found
            for key, found in candidates.items()
            if points_in_polygon(_centre(found[0])[None], self._polygon)[0]
            and self._gap(found[0], person_boxes) > self._radius
        }
        return self._spells.events(
            tracks,
            active,
            lambda key, state, ms, found: AbandonedObjectBody(
                zone_id=self.rule_id, state=state, source=key[0], box=tuple(found[0]), duration_ms=ms, reasons=found[1]
            ),
            gone=[("detection", t) for t in tracks.ended.tolist()],
            # a left region's subject too, so that its started and ended pair up: its ids count below zero,
            # apart from the tracks' (a region is an object's pixels, not a person)
            subject=lambda key: key[1] if key[0] == "detection" else -1 - key[1],
        )

    def _still_detections(self, tracks: Tracks) -> dict[tuple[str, int], tuple[np.ndarray, list[str]]]:
        rows = np.flatnonzero(self._objects.mask(tracks))
        self._history.update(tracks, rows)
        out = {}
        for r in rows.tolist():
            v = self._history.velocity(int(tracks.track_id[r]))
            if v is not None and np.hypot(*v) < self._s.still_speed:
                box = np.asarray(box_norm(tracks.detections.xyxy[r], tracks.size_wh))
                out[("detection", int(tracks.track_id[r]))] = (box, ["detected_bag"])
        return out

    def _left_regions(self, now_ns: int, ids: np.ndarray, boxes: np.ndarray) -> dict[tuple[str, int], tuple[np.ndarray, list[str]]]:
        """The analyzer's static regions whose owner left and that are smaller than a person."""
        if self._analyzer is None:
            return {}
        seen: set[int] = set()
        for box, since_ns in zip(self._analyzer.boxes, self._analyzer.static_since_ns.tolist()):
            keys = list(self._regions)  # the region this box overlaps most, if any overlaps enough
            iou = iou_matrix(np.asarray([self._regions[k].box for k in keys]), box)[:, 0]
            key = keys[int(np.argmax(iou))] if keys else None
            if key is None or key in seen or iou.max() < self._s.match_iou:
                key, self._next_key = self._next_key, self._next_key + 1
                self._regions[key] = self._appeared(box, since_ns, now_ns)
            region = self._regions[key]
            region.box, region.seen_ns = box, now_ns
            seen.add(key)
        out = {}
        for key, region in list(self._regions.items()):
            if now_ns - region.seen_ns > self._s.grace_s * NS_PER_S:
                del self._regions[key]
                continue
            owners_at = np.flatnonzero(np.isin(ids, list(region.owners)))
            region.owner_left |= any(self._gap(region.box, boxes[i][None]) > self._radius for i in owners_at)
            person_sized = _area(region.box) >= self._s.person_size * region.owner_area
            if key in seen and region.owner_left and not person_sized:
                out[("foreground", key)] = (region.box, ["static_region", "owner_left"])
        return out

    def _appeared(self, box: np.ndarray, since_ns: int, now_ns: int) -> _Region:
        """A new region, static since `since_ns`. Its owners: the persons within `owner_radius` of it in the
        `owner_lookback_s` before then (the analyzer counts a region only once it has been still a while, and
        may report it later still, so they may be leaving or gone already); whether one of them was seen away
        from it since."""
        last_gap: dict[int, float] = {}
        owners: set[int] = set()
        owner_area = 0.0
        start_ns = since_ns - self._s.owner_lookback_s * NS_PER_S
        for pts_ns, ids, boxes in self._people:  # oldest first
            if pts_ns < start_ns:
                continue
            for tid, b in zip(ids.tolist(), boxes):
                last_gap[tid] = self._gap(box, b[None])
                if last_gap[tid] <= self._radius and pts_ns <= since_ns:  # not who passed by after it was there
                    owners.add(tid)
                    owner_area = max(owner_area, _area(b))
        left = any(last_gap[tid] > self._radius for tid in owners)
        return _Region(box, now_ns, owners, owner_area, left)

    def _gap(self, box: np.ndarray, others: np.ndarray) -> float:
        """How far `box` (4,) is from the nearest of `others` (K, 4), normalised boxes: the gap between the boxes,
        or with `owner_radius_m` the ground distance in metres between their feet (bottom centres); inf when K = 0."""
        if self._ground is None or len(others) == 0:
            return _nearest(box, others)
        feet = np.stack([(others[:, 0] + others[:, 2]) / 2, others[:, 3]], axis=1)
        mine = np.repeat([[(box[0] + box[2]) / 2, box[3]]], len(others), axis=0)
        return float(self._ground.distance_m(mine, feet).min())

    def state_size(self) -> int:
        """Entries held for tracks and regions; the recent persons are bounded by time (owner_lookback_s and
        HELD_BACK_MAX_S) instead: an owner must be found even when their track ended before the region was reported."""
        return len(self._history) + len(self._regions) + len(self._spells)


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)


def _nearest(box: np.ndarray, others: np.ndarray) -> float:
    """Smallest gap between `box` float (4,) and any of `others` float (K, 4); 0 when they overlap; inf when K = 0."""
    if len(others) == 0:
        return float("inf")
    dx = np.maximum(0.0, np.maximum(others[:, 0] - box[2], box[0] - others[:, 2]))
    dy = np.maximum(0.0, np.maximum(others[:, 1] - box[3], box[1] - others[:, 3]))
    return float(np.hypot(dx, dy).min())


def _build(area: Area, settings: AbandonedSettings) -> AbandonedRule:
    objects, persons = area.classes.only({"person"}, exclude=True), area.classes.only({"person"})
    return AbandonedRule(area.id, area.geometry, objects, persons, area.analyzers.get("static"), settings, area.ground)


KIND = Kind(
    name="abandoned_object", body=AbandonedObjectBody, settings=AbandonedSettings, field="abandoned", build=_build,
    description="raise abandoned-object events (absent: off); objects are the zone's non-person classes and static "
    "foreground regions, and 'person' must be among the classes so owners are seen",
    requires=frozenset({"person"}),
)  # fmt: skip
