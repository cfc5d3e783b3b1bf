"""Person down: a person seen upright goes down fast and stays down.

Evidence the detector's misses cannot erase (yolox_nano often sees a lying person in
few frames or none):

- the upright reference: the person's box while upright (height/width >= upright_ratio);
  its top may sink and its height shrink only slowly, so the upright-looking boxes in
  the middle of a fall, or of sitting down, do not drag it down. A second, partial
  box inside a bigger one is not a person of its own;
- the box, when the detector sees the person low: its top dropped by `deep_drop_ratio`
  upright heights whatever its shape (a fall towards the camera keeps a squarish
  box), or by `drop_ratio` with a lying box;
- the silhouette (silhouette analyzer: background subtraction), when the detector does
  not see the person, or sees a box whose top dropped by `blob_drop_ratio` too: the
  foreground under and beside where the person stood, less what other upright people
  explain, must lie below that drop (at most `blob_max_above` of it above, over the
  upright box: else a person standing there unseen), cover `blob_min_area` of the
  upright box (a body, not noise) and be at least `blob_min_aspect` as wide as tall (a
  body on the floor, not the legs of someone crouching). Only for a person whose
  upright box was moving foreground (a detection on still furniture is not) and who
  was not last seen at the frame's left or right edge (leaving it), and who was going
  down: their last box's top had sunk by `sink_min`, or, once the detector lost them,
  their silhouette where they stood (covering `standing_fg_min` of the upper part of
  the upright box) had its top sunk as much (its top not sunk: they stand there, not
  going down).

The drop must be fast: the first low sighting within `fall_s` of the last upright
one (lying down slowly, or sitting first, passes through seconds of neither). Then
it must hold for `down_s` (bending and getting up passes). A fall often breaks the
track, so a vanished person's reference moves to a new track that appears below it:
position only, no identity. One situation per person, keyed by the track that was
upright, `started` then `ended` once up again or unseen for `up_grace_s`.

The defaults were chosen by leave-one-room-out cross-validation on the 62 Le2i clips
(`make eval-falls tune-falls`; held-out figures in the README).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import ClassSelector, Settings, Spells, box_norm, in_zone
from agent.analytics.registry import Area, Kind
from agent.core.events import Body, Box, Event, Id, State, Tally
from agent.core.types import Tracks
from agent.core.units import NS_PER_S
from engines.nms import inside_larger

if TYPE_CHECKING:  # the analyzer (OpenCV) is built by the camera, not imported with the kinds
    from agent.analytics.analyzers.silhouette import SilhouetteAnalyzer

# a new track's upright box is a lost person seen there again only if no taller than their upright box by more than
# this (shorter is them seated, or behind a table; taller is someone nearer the camera)
TALLER_MAX = 0.25


class PersonDownBody(Body):
    """A person went from upright to lying and stayed down."""

    kind: Literal["person_down"] = "person_down"
    zone_id: Id
    state: State = Field(description="started once down long enough, ended when the person is up again or lost")
    box: Box = Field(description="the person's box while down")
    duration_ms: int = Field(ge=0, description="time down so far (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms)


class PersonDownSettings(Settings):
    upright_ratio: float = Field(1.4, gt=0.0, le=10.0, description="height/width at or above which a person is upright")
    drop_ratio: float = Field(
        0.35, gt=0.0, le=2.0, description="drop of the box's top edge, in upright heights, needed with a lying box"
    )
    lying_ratio: float = Field(1.2, gt=0.0, le=10.0, description="width/height at or above which a box is lying")
    deep_drop_ratio: float = Field(
        0.65, gt=0.0, le=2.0, description="drop of the top edge, in upright heights, that is down whatever the box "
        "shape (a fall towards the camera keeps a squarish box); sitting drops the top by about 0.3-0.5"
    )
    blob_drop_ratio: float = Field(
        0.45, gt=0.0, le=2.0, description="drop, in upright heights, below which the silhouette where the person stood "
        "must lie (when the detector does not see the person, or its box dropped as much)"
    )
    blob_min_area: float = Field(
        0.2, ge=0.0, le=10.0, description="smallest silhouette below that drop, share of the upright box's area "
        "(a body, not noise)"
    )
    blob_max_above: float = Field(
        0.2, ge=0.0, le=1.0, description="largest share of the silhouette there that may stand above that drop, "
        "over the upright box (more: a person still standing, unseen)"
    )
    blob_min_aspect: float = Field(
        0.7, ge=0.0, le=10.0, description="smallest width/height of the silhouette below that drop: a body on the "
        "floor spreads along it, the legs of someone crouching or bending stand taller than wide"
    )
    blob_reach: float = Field(
        0.6, ge=0.0, le=3.0, description="how far beside the upright box, in upright heights, a lying body may reach"
    )
    edge_margin: float = Field(
        0.03, ge=0.0, le=0.5, description="a person last seen upright this close to the frame's left or right side "
        "(share of the width) left it: no silhouette evidence (one near the camera, cut by the bottom, did not)"
    )
    upright_fg_min: float = Field(
        0.15, ge=0.0, le=1.0, description="share of the upright box the silhouette must cover at the last upright "
        "sighting for the silhouette to be sought later (a detection on furniture is not moving foreground)"
    )
    standing_fg_min: float = Field(
        0.3, ge=0.0, le=1.0, description="share of the upright box's upper part (its top down to the drop line of "
        "blob_drop_ratio) the silhouette must cover to show a person the detector lost still standing there; its top "
        "sunk by sink_min is then going down, as a box's"
    )
    sink_min: float = Field(
        0.05, ge=0.0, le=2.0, description="the silhouette is sought only for a person whose last box seen (or, once "
        "lost, whose silhouette standing there) had its top this far below the reference, in upright heights: going "
        "down, not hidden behind someone while walking"
    )
    max_sink_per_s: float = Field(
        0.25, gt=0.0, le=10.0, description="fastest the upright reference's top may sink and its height shrink, in heights "
        "per second; walking towards a camera lowers it far slower, a fall drops it by 0.6-1 height within a second"
    )
    fall_s: float = Field(
        1.5, gt=0.0, le=60.0, description="the first low sighting must come within this of the last upright one: "
        "a fall is fast, lying down on purpose is not"
    )
    down_s: float = Field(1.5, ge=0.0, le=600.0, description="time down before the event starts; sitting down passes")
    up_grace_s: float = Field(2.0, ge=0.0, le=600.0, description="time up again (or unseen) before the event ends")
    relink_s: float = Field(
        3.0, ge=0.0, le=60.0, description="how long a vanished person's reference stays, for a new track or its silhouette"
    )


@dataclass(slots=True)
class _Person:
    key: int  # the track id the person was first seen upright under: names the situation
    top: float  # pixels: box top while upright (sinks at most max_sink_per_s)
    height: float  # pixels: box height while upright
    x1: float
    x2: float
    seen_ns: int  # last upright sighting
    traceable: bool  # that box was away from the left and right sides, and moving foreground
    low_ns: int | None = None  # last low sighting since upright
    sinking: bool = False  # the last box seen had its top `sink_min` below the reference: going down


class PersonDownRule:
    """One zone of one camera. State: a reference per recent person and the spells."""

    needs_fresh_boxes = True  # reads box shapes each frame; a tracker's prediction keeps the old shape

    def __init__(
        self,
        zone_id: str,
        polygon: np.ndarray,
        classes: ClassSelector,
        silhouette: SilhouetteAnalyzer,
        settings: PersonDownSettings,
    ) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._silhouette = silhouette
        self._s = settings
        self._fall_ns = int(settings.fall_s * NS_PER_S)
        self._grace_ns = int(settings.up_grace_s * NS_PER_S)
        self._relink_ns = int(settings.relink_s * NS_PER_S)
        self._people: dict[int, _Person] = {}
        self._spells: Spells[int] = Spells(settings.down_s, settings.up_grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        now = tracks.pts_ns
        size = np.array(tracks.size_wh * 2, np.float32)
        active: dict[int, tuple] = {}
        rows = np.flatnonzero(in_zone(tracks, self._polygon, self._classes)).tolist()
        current = {int(tracks.track_id[r]) for r in rows}
        upright: dict[int, np.ndarray] = {}  # track id -> its upright box now
        seen_up: set[int] = set()  # tracks whose box now is not low enough for the silhouette to overrule it
        for r in _whole(tracks.detections.xyxy, rows):
            tid = int(tracks.track_id[r])
            xyxy = tracks.detections.xyxy[r]
            x1, y1, x2, y2 = xyxy.tolist()
            bw, bh = x2 - x1, y2 - y1
            if bh >= self._s.upright_ratio * bw:
                known = self._people.get(tid) or self._relink(tid, xyxy, current, up=True)
                self._people[tid] = self._follow(known, tid, xyxy, size, now)
                upright[tid] = xyxy
                continue
            person = self._people.get(tid) or self._relink(tid, xyxy, current, up=False)
            if person is None:
                continue
            drop = (y1 - person.top) / person.height
            person.sinking = drop >= self._s.sink_min
            if drop >= self._s.deep_drop_ratio or (bw >= self._s.lying_ratio * bh and drop >= self._s.drop_ratio):
                self._down(person, now, box_norm(xyxy, tracks.size_wh), active)
            elif drop < self._s.blob_drop_ratio:
                seen_up.add(tid)
        for tid, person in self._people.items():
            lost = tid not in current  # the detector lost them: the silhouette shows whether they stand or went down
            if tid in upright or tid in seen_up or person.key in active or not person.traceable or not (person.sinking or lost):
                continue
            standing, box = self._silhouette_at(person, size, [b for t, b in upright.items() if t != tid])
            if box is not None and person.sinking:
                self._down(person, now, box, active)
            elif standing is not None and lost:
                person.sinking = standing >= self._s.sink_min
        for tid, person in list(self._people.items()):
            if tid not in current and now - max(person.seen_ns, person.low_ns or 0) > self._relink_ns:
                del self._people[tid]
        return self._spells.events(
            tracks,
            active,
            lambda _, state, ms, box: PersonDownBody(zone_id=self.rule_id, state=state, box=box, duration_ms=ms),
            subject=lambda key: key,
        )

    def _down(self, person: _Person, now: int, box: tuple, active: dict[int, tuple]) -> None:
        """A low sighting: it counts if it continues one (gaps up to up_grace_s) or comes soon after upright."""
        continuing = person.low_ns is not None and now - person.low_ns <= self._grace_ns
        if continuing or now - person.seen_ns <= self._fall_ns:
            person.low_ns = now
            active[person.key] = box

    def _silhouette_at(
        self, person: _Person, size: np.ndarray, others: list[np.ndarray]
    ) -> tuple[float | None, tuple | None]:
        """The silhouette where the person stood, less what the upright boxes of `others` explain (down to half
        a box below their feet): (None, its normalised box) if it lies low and is big enough; else, if it covers
        `standing_fg_min` of the upright box's upper part (they stand there), (the drop of its top there, in upright
        heights, None); else (None, None)."""
        mask = self._silhouette.mask
        if mask is None:
            return None, None
        mh, mw = mask.shape
        sx, sy = mw / float(size[0]), mh / float(size[1])  # frame pixels -> mask pixels
        if others:
            mask = mask.copy()
            for x1, y1, x2, y2 in others:  # with the shadow or reflection below their feet
                mask[int(y1 * sy) : int(np.ceil((1.5 * y2 - 0.5 * y1) * sy)), int(x1 * sx) : int(np.ceil(x2 * sx))] = False
        reach = self._s.blob_reach * person.height
        c0, c1 = max(0, int((person.x1 - reach) * sx)), min(mw, int(np.ceil((person.x2 + reach) * sx)))
        r0 = max(0, int((person.top - 0.25 * person.height) * sy))
        line = max(r0, int((person.top + self._s.blob_drop_ratio * person.height) * sy))
        # below the line anywhere within reach (a body lies sideways); above it only over the upright box
        low = int(mask[line:, c0:c1].sum())
        over = mask[r0:line, max(0, int(person.x1 * sx)) : int(np.ceil(person.x2 * sx))]
        above = int(over.sum())
        upright_area = person.height * (person.x2 - person.x1) * sx * sy
        if low > 0 and low >= self._s.blob_min_area * upright_area and above <= self._s.blob_max_above * (low + above):
            ys, xs = np.nonzero(mask[line:, c0:c1])
            if (xs.max() + 1 - xs.min()) / sx < self._s.blob_min_aspect * (ys.max() + 1 - ys.min()) / sy:
                return None, None  # taller than a body on the floor: the legs of someone crouching or bending
            return None, ((c0 + xs.min()) / mw, (line + ys.min()) / mh, (c0 + xs.max() + 1) / mw, (line + ys.max() + 1) / mh)
        upper = over[max(0, int(person.top * sy)) - r0 :]
        if upper.size == 0 or upper.sum() < self._s.standing_fg_min * upper.size:
            return None, None
        return ((r0 + int(np.argmax(over.any(axis=1)))) / sy - person.top) / person.height, None

    def _follow(self, person: _Person | None, tid: int, xyxy: np.ndarray, size: np.ndarray, now: int) -> _Person:
        """The reference after an upright box: its top rises and its height grows freely, but they sink and
        shrink by at most `max_sink_per_s` heights per second, so the upright-looking boxes in the middle of a
        fall, or of a person sitting down, do not drag it down."""
        x1, y1, x2, y2 = xyxy.tolist()
        m, mask = self._s.edge_margin, self._silhouette.mask
        inside = x1 > m * size[0] and x2 < (1 - m) * size[0]
        if mask is not None and inside:
            mh, mw = mask.shape
            box = mask[int(y1 * mh / size[1]) : int(np.ceil(y2 * mh / size[1])), int(x1 * mw / size[0]) : int(np.ceil(x2 * mw / size[0]))]
            inside = box.size > 0 and float(box.mean()) >= self._s.upright_fg_min
        if person is None:
            return _Person(tid, y1, y2 - y1, x1, x2, now, inside)
        sink = self._s.max_sink_per_s * person.height * (now - person.seen_ns) / NS_PER_S
        top, height = min(y1, person.top + sink), max(y2 - y1, person.height - sink)
        return _Person(person.key, top, height, x1, x2, now, inside, sinking=y1 - top >= self._s.sink_min * height)

    def _relink(self, tid: int, xyxy: np.ndarray, current: set[int], up: bool) -> _Person | None:
        """Move the reference of a person not seen now, whose upright box overlaps this one horizontally, to this
        track: a low box below where they stood (`up` False), or an upright box like theirs (`up`: they are up there
        again, standing or seated, under a new track, and their silhouette is no longer sought): over half the
        narrower width, at most `TALLER_MAX` taller, its top within `blob_drop_ratio` heights of theirs; not while
        their situation runs (someone standing beside a person lying there may be their helper: the silhouette
        shows when they are up)."""
        x1, top, x2, y2 = xyxy.tolist()
        for old, person in self._people.items():
            overlap = min(x2, person.x2) - max(x1, person.x1)
            if up:
                there = (
                    overlap > 0.5 * min(x2 - x1, person.x2 - person.x1)
                    and y2 - top <= (1 + TALLER_MAX) * person.height
                    and abs(top - person.top) < self._s.blob_drop_ratio * person.height
                    and not self._spells.is_started(person.key)
                )
            else:
                there = overlap > 0 and top > person.top
            if old not in current and there:
                del self._people[old]
                self._people[tid] = person
                return person
        return None

    def state_size(self) -> int:
        return len(self._people) + len(self._spells)


def _build(area: Area, settings: PersonDownSettings) -> PersonDownRule:
    return PersonDownRule(area.id, area.geometry, area.classes, area.analyzers.get("silhouette"), settings)


KIND = Kind(
    name="person_down", body=PersonDownBody, settings=PersonDownSettings, field="person_down", build=_build,
    description="raise person-down events (absent: off)",
)  # fmt: skip


def _whole(xyxy: np.ndarray, rows: list[int]) -> list[int]:
    """The rows whose box is not mostly (70 %) inside a bigger box of the same frame: a second, partial
    detection of one person (their upper body while they sit down) is not a person of its own."""
    return [r for r, part in zip(rows, inside_larger(xyxy[rows], 0.7)) if not part]
