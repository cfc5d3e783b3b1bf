"""Aggregates-only mode: the rules' events folded into counts and durations per zone
and interval, with nothing that could single out a subject."""

from __future__ import annotations

from agent.analytics.aggregates import MAX_TALLIES, AggregateBody, Aggregator, ZoneTally
from agent.analytics.kinds.intrusion import IntrusionBody
from agent.analytics.kinds.line_count import LineCountBody
from agent.analytics.kinds.occupancy import ZoneOccupancyBody
from agent.core.events import Event

S = 1_000_000_000


def intrusion(state: str, duration_ms: int) -> IntrusionBody:
    return IntrusionBody(zone_id="door", state=state, class_name="person", point=(0.1, 0.2), duration_ms=duration_ms)


def ev(body, t_s: float, track: int | None = None) -> Event:
    return Event("cam", int(t_s * S), body, track_id=track)


def test_an_interval_becomes_counts_and_durations_without_subjects():
    agg = Aggregator(interval_s=60)
    line = dict(line_id="gate", class_name="person", point=(0.5, 0.5), count_in=1, count_out=0)
    assert agg.update([ev(intrusion("started", 1000), 600.5, track=1)], int(600.5 * S)) == []
    agg.update([ev(LineCountBody(direction="in", **line), 601, track=2)], 601 * S)
    agg.update([ev(LineCountBody(direction="in", **{**line, "count_in": 2}), 602, track=3)], 602 * S)
    agg.update([ev(ZoneOccupancyBody(zone_id="door", class_name="person", count=3, previous=1), 603)], 603 * S)
    agg.update([ev(intrusion("ended", 4000), 604, track=1)], 604 * S)
    (body,) = agg.update([], 660 * S)  # the first frame of the next interval closes this one
    # in one part; covered: the steps between its frames (the 56 s to the next is a gap)
    assert (body.start_ms, body.interval_ms, body.covered_ms, body.part, body.parts) == (600_000, 60_000, 3_500, 1, 1)
    assert body.tallies == [
        ZoneTally(area_id="door", event_kind="intrusion", class_name="person", count=1, duration_ms=4000),
        ZoneTally(area_id="door", event_kind="zone_occupancy", class_name="person", count=0, duration_ms=0, peak=3),
        ZoneTally(area_id="gate", event_kind="line_count", class_name="person", direction="in", count=2, duration_ms=0),
    ]
    dumped = body.model_dump_json()
    assert "subject" not in dumped and "point" not in dumped and "box" not in dumped


def test_quiet_intervals_say_zero_and_flush_closes_the_last_one():
    agg = Aggregator(interval_s=10)
    agg.update([], 5 * S)
    assert [b.tallies for b in agg.update([], 15 * S)] == [[]]
    assert [b.start_ms for b in agg.flush()] == [10_000]
    assert agg.flush() == []


def frames(agg: Aggregator, from_s: float, to_s: float) -> list:
    """A camera at 10 fps from `from_s` to `to_s`: the intervals it closed."""
    return [b for i in range(round(from_s * 10), round(to_s * 10) + 1) for b in agg.update([], i * S // 10)]


def test_an_interval_says_how_much_of_it_the_frames_covered():
    agg = Aggregator(interval_s=10)
    closed = frames(agg, 5.0, 25.0)  # started 5 s into the first interval, stopped 5 s into the third
    assert [(b.start_ms, b.covered_ms) for b in closed + agg.flush()] == [(0, 5_000), (10_000, 10_000), (20_000, 5_000)]


def test_a_camera_away_for_a_while_leaves_that_out():
    agg = Aggregator(interval_s=10)
    closed = frames(agg, 1.0, 3.0) + frames(agg, 7.0, 12.0)  # away from 3 s to 7 s: more than a frame's step
    assert [(b.start_ms, b.covered_ms) for b in closed + agg.flush()] == [(0, 5_000), (10_000, 2_000)]


def test_a_clock_stepped_back_is_a_gap_not_a_failure():
    agg = Aggregator(interval_s=10)
    closed = frames(agg, 29.0, 30.5) + frames(agg, 29.5, 29.7)  # the wall clock went back 1 s
    assert [(b.start_ms, b.covered_ms) for b in closed + agg.flush()] == [(20_000, 1_000), (30_000, 500), (20_000, 200)]


def test_many_zones_are_split_under_the_payload_cap():
    agg = Aggregator(interval_s=10)
    bodies = [ZoneOccupancyBody(zone_id=f"z{i}", class_name="person", count=1, previous=0) for i in range(45)]
    agg.update([ev(b, 1) for b in bodies], 1 * S)
    out = agg.flush()
    assert [len(b.tallies) for b in out] == [MAX_TALLIES] * 3 + [45 - 3 * MAX_TALLIES]
    assert [(b.part, b.parts, b.start_ms) for b in out] == [(1, 4, 0), (2, 4, 0), (3, 4, 0), (4, 4, 0)]


def test_an_aggregate_is_an_event_on_the_wire_under_the_cap():
    from agent.wire.envelope import encode
    from agent.wire.privacy import EnvelopeBuilder

    agg = Aggregator(interval_s=10)
    agg.update([ev(ZoneOccupancyBody(zone_id=f"z{i}", class_name="person", count=9, previous=0), 1) for i in range(MAX_TALLIES)], S)
    (body,) = agg.flush()
    envelope = EnvelopeBuilder("box-1", "0123456789abcdef", b"k" * 32).build(Event("cam", body.start_ms * 10**6, body))
    assert envelope.subject is None and isinstance(envelope.body, AggregateBody)
    assert len(encode(envelope)) < 4096
