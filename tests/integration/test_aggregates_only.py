"""Aggregates-only mode on the real agent (real model, real Mosquitto, the sample clip in real time): what a
subscriber gets is one interval per camera in as many parts as its tallies need, each saying which part of
how many and how much of the interval the camera covered: the first interval (started in its middle) and
the last (flushed at stop) only partly, those between wholly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.agent_process import AgentProcess, base_config, looping_plaza, write_config

pytestmark = pytest.mark.integration

INTERVAL_S = 10
ZONES = 13  # one intrusion tally each: one more than a message holds (MAX_TALLIES 12)


def test_intervals_come_in_parts_and_say_how_much_they_cover(tmp_path: Path, mosquitto, subscriber, models_dir: Path,
                                                             media_dir: Path) -> None:
    square = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    zones = {"version": 1, "zones": [{"id": f"z{i}", "camera": "plaza", "polygon": square, "intrusion": {"dwell_s": 0.2}}
                                     for i in range(ZONES)]}  # fmt: skip
    raw = {**base_config(models_dir, mosquitto.port, looping_plaza(media_dir)),
           "aggregates_only": {"plaza": {"interval_s": INTERVAL_S}}}  # fmt: skip
    sub = subscriber(mosquitto, "edge/v1/site-1/box-1/events/#")
    agent = AgentProcess(write_config(tmp_path / "cfg", raw, zones))
    try:
        # two bounds passed: a first, partial interval and a whole one are out
        sub.wait_for(lambda ms: len({json.loads(m.payload)["body"]["start_ms"] for m in ms}) >= 2, 3 * INTERVAL_S + 30)
        assert agent.stop() == 0, agent.log_tail()
    finally:
        agent.kill()
    # and the interval the stop cut short, flushed on the way out
    messages = sub.wait_for(lambda ms: len({json.loads(m.payload)["body"]["start_ms"] for m in ms}) >= 3, 10)
    bodies = [json.loads(m.payload)["body"] for m in messages]
    assert {m.topic.rsplit("/", 1)[-1] for m in messages} == {"aggregate"}
    intervals: dict[int, list[dict]] = {}
    for body in bodies:
        intervals.setdefault(body["start_ms"], []).append(body)
    starts = sorted(intervals)
    for start in starts:
        parts = intervals[start]
        assert sorted(b["part"] for b in parts) == list(range(1, parts[0]["parts"] + 1)), parts
        assert len({b["covered_ms"] for b in parts}) == 1 and all(b["interval_ms"] == INTERVAL_S * 1000 for b in parts)
        tallies = [t for b in parts for t in b["tallies"]]
        assert len(parts) == max(1, -(-len(tallies) // 12)) and all(t["event_kind"] == "intrusion" for t in tallies)
    # people walk through every zone in a whole interval: 13 tallies, in two parts
    assert any(intervals[s][0]["parts"] == 2 for s in starts[1:-1]), intervals
    covered = [intervals[s][0]["covered_ms"] for s in starts]
    assert 0 < covered[0] < INTERVAL_S * 1000 and covered[-1] < INTERVAL_S * 1000, covered
    assert all(c == INTERVAL_S * 1000 for c in covered[1:-1]), covered
