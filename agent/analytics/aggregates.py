"""Aggregates-only mode: a camera publishes counts and durations per zone and
interval instead of per-subject events.

The camera's rules run as usual; their events never leave the box: the
`Aggregator` folds them into one tally per (zone or line, kind, class,
direction) and emits an `AggregateBody` per closed interval. No subject id, no
position, no box: only how many and how long. Pure: time comes from `pts_ns`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.core.events import Body, ClassName, Direction, Event, Id
from agent.core.units import NS_PER_MS, NS_PER_S

# one aggregate message stays under the payload cap even with the longest ids: a tally is
# at most ~290 B of JSON, the envelope ~300 B
MAX_TALLIES = 12
# two frames further apart than this (or out of order: a clock stepped back) leave a gap, not coverage
MAX_FRAME_STEP_NS = 2 * NS_PER_S


class ZoneTally(BaseModel):
    """What one kind of rule saw in one zone or line during the interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    area_id: Id = Field(description="the zone or line id")
    event_kind: ClassName = Field(description="the rule's event kind (intrusion, line_count, ...)")
    class_name: ClassName | None = Field(None, description="the watched class, where the rule has one")
    direction: Direction | None = Field(None, description="line crossings only")
    count: int = Field(ge=0, description="occurrences that started in the interval (crossings for a line)")
    duration_ms: int = Field(ge=0, description="summed duration of the occurrences that ended in the interval")
    peak: int | None = Field(None, ge=0, description="the highest count a counting rule reported in the interval")


class AggregateBody(Body):
    """Counts and durations per zone over one interval of one camera: never a subject."""

    kind: Literal["aggregate"] = "aggregate"
    start_ms: int = Field(ge=0, description="interval start, UTC milliseconds")
    interval_ms: int = Field(gt=0, description="interval length")
    covered_ms: int = Field(
        ge=0, description="how much of the interval the camera's frames covered (frames 2 s or more apart leave a gap): "
        "all of it unless the agent started or stopped in it or the camera was away"
    )
    part: int = Field(1, ge=1, description="an interval with more tallies than fit one message comes in parts: which")
    parts: int = Field(1, ge=1, description="how many messages this interval's tallies came in")
    tallies: list[ZoneTally] = Field(max_length=MAX_TALLIES, description="empty: nothing happened")

    @model_validator(mode="after")
    def _part_of_parts(self) -> AggregateBody:
        if self.part > self.parts or self.covered_ms > self.interval_ms:
            raise ValueError("part must not exceed parts, nor covered_ms interval_ms")
        return self


@dataclass
class _Tally:
    count: int = 0
    duration_ms: int = 0
    peak: int | None = None


class Aggregator:
    """Folds one camera's events into per-interval tallies.

    `update(events, pts_ns)` for every frame returns the bodies of the intervals
    that frame closed (usually none); `flush()` closes the current one. State is
    bounded by the number of (area, kind, class, direction) keys of the zones.
    """

    def __init__(self, interval_s: int) -> None:
        self._interval_ns = interval_s * NS_PER_S
        self._index: int | None = None
        self._covered_ns = 0  # of the current interval: the steps between its frames, up to MAX_FRAME_STEP_NS
        self._last_ns: int | None = None
        self._tallies: dict[tuple[str, str, str | None, Direction | None], _Tally] = {}

    def update(self, events: list[Event], pts_ns: int) -> list[AggregateBody]:
        index = pts_ns // self._interval_ns
        last = pts_ns if self._last_ns is None else self._last_ns
        covered = 0 < pts_ns - last <= MAX_FRAME_STEP_NS
        closed: list[AggregateBody] = []
        if index != self._index:
            bound = index * self._interval_ns
            if covered:  # the step across the bound: its part before it is the closing interval's
                self._covered_ns += bound - last
            closed = self.flush()
            self._index, self._covered_ns = index, pts_ns - bound if covered else 0
        elif covered:
            self._covered_ns += pts_ns - last
        self._last_ns = pts_ns
        for event in events:
            self._add(event.body)
        return closed

    def flush(self) -> list[AggregateBody]:
        """The bodies of the current interval (several if it has many tallies); then empty."""
        if self._index is None:
            return []
        tallies = [
            ZoneTally(area_id=k[0], event_kind=k[1], class_name=k[2], direction=k[3], count=t.count,
                      duration_ms=t.duration_ms, peak=t.peak)
            for k, t in sorted(self._tallies.items(), key=lambda kv: tuple(x or "" for x in kv[0]))
        ]  # fmt: skip
        start_ms = self._index * self._interval_ns // NS_PER_MS
        interval_ms = self._interval_ns // NS_PER_MS
        covered_ms = min(self._covered_ns, self._interval_ns) // NS_PER_MS
        self._index, self._tallies = None, {}
        chunks = [tallies[i : i + MAX_TALLIES] for i in range(0, len(tallies), MAX_TALLIES)] or [[]]
        return [
            AggregateBody(start_ms=start_ms, interval_ms=interval_ms, covered_ms=covered_ms, part=i, parts=len(chunks),
                          tallies=c)
            for i, c in enumerate(chunks, start=1)
        ]  # fmt: skip

    def _add(self, body: Body) -> None:
        t = body.tally()
        if t is None:
            return
        tally = self._tallies.setdefault((t.area_id, body.kind, t.class_name, t.direction), _Tally())
        tally.count += t.count
        tally.duration_ms += t.duration_ms
        if t.peak is not None:
            tally.peak = t.peak if tally.peak is None else max(tally.peak, t.peak)
