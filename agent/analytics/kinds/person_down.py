"""Person down: a person's box goes from upright to low (top edge dropped, and lying or
much lower) and stays so for a time; sitting or crouching briefly does not fire.

A fall often breaks the track (the box changes shape at once), so the upright
reference of a track that vanished is handed to a new track that appears
below it shortly after: position only, no identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import ClassSelector, Settings, Spells, box_norm, in_zone
from agent.analytics.registry import Kind, per_area
from agent.core.events import Body, Box, Event, Id, State, Tally
from agent.core.types import Tracks
from agent.core.units import NS_PER_S


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
    max_sink_per_s: float = Field(
        0.25, gt=0.0, le=10.0, description="fastest the upright reference's top may sink, in heights per second; "
        "walking towards a camera lowers it far slower, a fall drops it by 0.6-1 height within a second"
    )
    down_s: float = Field(2.0, ge=0.0, le=600.0, description="time down before the event starts; sitting down passes")
    up_grace_s: float = Field(2.0, ge=0.0, le=600.0, description="time up again (or unseen) before the event ends")
    relink_s: float = Field(
        3.0, ge=0.0, le=60.0, description="how long the upright reference of a vanished track can pass to a new track"
    )


@dataclass(slots=True)
class _Upright:
    top: float  # normalised y of the box top while upright
    height: float  # normalised box height while upright
    x1: float
    x2: float
    seen_ns: int


class PersonDownRule:
    """One zone of one camera. State: an upright reference per recent track and the spells."""

    def __init__(self, zone_id: str, polygon: np.ndarray, classes: ClassSelector, settings: PersonDownSettings) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._s = settings
        self._relink_ns = int(settings.relink_s * NS_PER_S)
        self._upright: dict[int, _Upright] = {}
        self._spells: Spells[int] = Spells(settings.down_s, settings.up_grace_s)

    def update(self, tracks: Tracks) -> list[Event]:
        now = tracks.pts_ns
        w, h = tracks.size_wh
        active = {}
        rows = np.flatnonzero(in_zone(tracks, self._polygon, self._classes))
        current = {int(tracks.track_id[r]) for r in rows.tolist()}
        for r in rows.tolist():
            tid = int(tracks.track_id[r])
            x1, y1, x2, y2 = (tracks.detections.xyxy[r] / np.array([w, h, w, h], np.float32)).tolist()
            bw, bh = (x2 - x1) * w, (y2 - y1) * h  # pixels, so ratios are true shapes
            ref = self._upright.get(tid)
            if bh >= self._s.upright_ratio * bw:
                self._upright[tid] = self._follow(ref, x1, y1, x2, y2, now)
                continue
            ref = ref or self._relink(x1, x2, y1, current, now)
            if ref is None:
                continue
            self._upright[tid] = ref
            drop = (y1 - ref.top) / ref.height
            lying = bw >= self._s.lying_ratio * bh
            if drop >= self._s.deep_drop_ratio or (lying and drop >= self._s.drop_ratio):
                active[tid] = box_norm(tracks.detections.xyxy[r], tracks.size_wh)
        ended = tracks.ended.tolist()
        for tid, ref in list(self._upright.items()):
            if now - ref.seen_ns > self._relink_ns and tid not in current:
                del self._upright[tid]
        return self._spells.events(
            tracks,
            active,
            lambda _, state, ms, box: PersonDownBody(zone_id=self.rule_id, state=state, box=box, duration_ms=ms),
            gone=ended,
            subject=lambda tid: tid,
        )

    def _follow(self, ref: _Upright | None, x1: float, y1: float, x2: float, y2: float, now: int) -> _Upright:
        """The reference after an upright box: it rises freely but sinks at most `max_sink_per_s`
        heights per second, so the upright-looking boxes in the middle of a fall do not drag it down."""
        if ref is None:
            return _Upright(y1, y2 - y1, x1, x2, now)
        floor = ref.top + self._s.max_sink_per_s * ref.height * (now - ref.seen_ns) / NS_PER_S
        if y1 <= floor:
            return _Upright(y1, y2 - y1, x1, x2, now)
        return _Upright(floor, ref.height, x1, x2, now)

    def _relink(self, x1: float, x2: float, top: float, current: set[int], now: int) -> _Upright | None:
        """The upright reference of a track not seen now whose box overlaps this one horizontally
        and stood above it; a copy, so each track keeps its own."""
        for tid, ref in self._upright.items():
            if tid not in current and min(x2, ref.x2) > max(x1, ref.x1) and top > ref.top:
                return _Upright(ref.top, ref.height, ref.x1, ref.x2, now)
        return None

    def state_size(self) -> int:
        return len(self._upright) + len(self._spells)


KIND = Kind(name="person_down", body=PersonDownBody, settings=PersonDownSettings, field="person_down", description="raise person-down events (absent: off)",
            build=per_area(PersonDownRule))  # fmt: skip
