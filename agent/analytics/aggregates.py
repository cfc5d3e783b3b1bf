"""Aggregates-only mode: a camera publishes counts and durations per zone and
interval instead of per-subject events.

The camera's rules run as usual; their events never leave the box: the
`Aggregator` folds them into one tally per (zone or line, kind, class,
direction) and emits an `AggregateBody` per closed interval. No subject id, no
position, no box: only how many and how long. Pure: time comes from `pts_ns`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.events import MAX_TALLIES, AggregateBody, Event, ZoneTally

NS_PER_MS = 1_000_000
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
        self._interval_ns = interval_s * 1_000_000_000
        self._index: int | None = None
        self._tallies: dict[tuple[str, str, str | None, str | None], _Tally] = {}

    def update(self, events: list[Event], pts_ns: int) -> list[AggregateBody]:
        index = pts_ns // self._interval_ns
        closed = self.flush() if self._index is not None and index != self._index else []
        self._index = index
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
        self._index, self._tallies = None, {}
        chunks = [tallies[i : i + MAX_TALLIES] for i in range(0, len(tallies), MAX_TALLIES)] or [[]]
        return [AggregateBody(start_ms=start_ms, interval_ms=interval_ms, tallies=c) for c in chunks]

    def _add(self, body: BaseModel) -> None:
        area = getattr(body, "zone_id", None) or getattr(body, "line_id", None)
        if area is None:
            return
        key = (area, body.kind, getattr(body, "class_name", None), getattr(body, "direction", None))
        tally = self._tallies.setdefault(key, _Tally())
        state = getattr(body, "state", None)
        if state in (None, "started") and not hasattr(body, "previous"):
            tally.count += 1  # a start, or a one-off occurrence such as a crossing
        if state == "ended":
            tally.duration_ms += getattr(body, "duration_ms", 0)
        count = getattr(body, "count", None)
        if count is not None and not hasattr(body, "count_in"):
            tally.peak = count if tally.peak is None else max(tally.peak, count)
