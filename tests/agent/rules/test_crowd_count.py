"""Counting a crowd: what is seen now (smoothed), the perspective fitted to the boxes, and the
foreground-area estimate taking over where boxes miss people."""

from __future__ import annotations

import numpy as np
import pytest

from agent.analytics import crowd
from agent.analytics.crowd import Perspective, ZoneCount
from agent.core.types import Detections, Tracks

FULL = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
PERSON = np.array([0], np.int32)
SIZE = (640, 480)


def frame(t_s: float, boxes, seen: bool = True) -> Tracks:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    det = Detections(xyxy, np.full(len(xyxy), 0.9, np.float32), np.zeros(len(xyxy), np.int32))
    none = Detections.empty()
    return Tracks(
        "cam", int(t_s * 1e9), none, np.zeros(0, np.int64), np.zeros(0, np.int64), SIZE, det if seen else None
    )


def people(n: int, y: float = 300.0, h: float = 60.0):
    """n boxes of height h with feet at row y, side by side."""
    return [(10 + 12 * i, y - h, 30 + 12 * i, y) for i in range(n)]


def test_counts_what_is_seen_now_smoothed_and_held_between_detections():
    count = ZoneCount(FULL, PERSON, smooth_s=1.0, area=False)
    for t, n in [(0.0, 10), (0.5, 14)]:
        count.update(frame(t, people(n)), None)
    assert (count.count, count.estimate) == (12, "detections")
    count.update(frame(0.75, [], seen=False), None)  # a predicted frame: the window holds
    assert count.count == 12
    count.update(frame(2.0, people(20)), None)  # the old samples left the window
    assert count.count == 20


def test_perspective_follows_the_boxes_and_never_shrinks_towards_the_camera():
    p = Perspective()
    assert p.heights(np.array([100.0]), 480) is None
    rows = np.linspace(100, 460, 40)
    p.add(rows, 0.2 * rows)  # people twice as tall twice as low on the frame
    np.testing.assert_allclose(p.heights(np.array([150.0, 300.0]), 480), [30.0, 60.0], rtol=0.05)
    q = Perspective()
    q.add(np.array([300.0, 310.0]), np.array([50.0, 70.0]))  # one band: no slope, the median height
    np.testing.assert_allclose(q.heights(np.array([10.0, 470.0]), 480), [60.0, 60.0])


@pytest.mark.parametrize("k, estimate", [(0.0, "detections"), (10.0, "area")])
def test_area_estimate_takes_over_where_it_finds_more(k, estimate, monkeypatch):
    monkeypatch.setattr(crowd, "BOX_WEIGHT", 1.0)
    monkeypatch.setattr(crowd, "EDGE_PERSONS_K", k)
    monkeypatch.setattr(crowd, "HEIGHT_POWER", 2.0)
    monkeypatch.setattr(crowd, "PACKED", 0.0)
    count = ZoneCount(FULL, PERSON, smooth_s=0.0, area=True)
    edges = np.ones((144, 192), bool)  # texture everywhere; only what lies inside the boxes counts
    count.update(frame(0.0, people(10)), edges)
    # the ten 60 px boxes side by side cover x 10..138, y 240..300: 39 x 18 analysis pixels (0.3 per frame
    # pixel); every person 60 px tall is 18 analysis px, so an edge pixel weighs 1 / 18²
    expected = 10 + k * 39 * 18 / 18.0**2
    assert count.area_count == pytest.approx(expected, rel=1e-6)
    assert count.estimate == estimate
    assert count.count == (round(expected) if estimate == "area" else 10)


@pytest.mark.parametrize(
    "zone, estimate",
    [
        (FULL, "detections"),  # ten people on a whole frame: the boxes cover 2.5 % of it, everyone is seen
        (np.array([[0.0, 0.45], [0.25, 0.45], [0.25, 0.65], [0.0, 0.65]]), "area"),  # the same ten fill this zone
    ],
)
def test_area_estimate_only_where_the_boxes_cover_enough_of_the_zone(zone, estimate, monkeypatch):
    monkeypatch.setattr(crowd, "EDGE_PERSONS_K", 10.0)
    monkeypatch.setattr(crowd, "PACKED", 0.1)
    count = ZoneCount(zone, PERSON, smooth_s=0.0, area=True)
    count.update(frame(0.0, people(10)), np.ones((144, 192), bool))
    # the boxes cover 39 x 18 analysis pixels; the small zone is 48 x 28.8 of them
    assert count.coverage == pytest.approx(39 * 18 / (192 * 144) if zone is FULL else 39 * 18 / (48 * 29), rel=0.05)
    assert count.area_count > count.detected == 10  # the area estimate finds more in both ...
    assert count.estimate == estimate  # ... and counts only where the zone is packed
    assert count.count == (10 if estimate == "detections" else round(count.area_count))


def test_occupancy_in_the_crowded_mode_counts_what_is_seen_not_tracks():
    from agent.analytics.kinds.occupancy import OccupancyRule, OccupancySettings
    from tests.agent.rules.fixtures import area

    rule = OccupancyRule(area(FULL), OccupancySettings(settle_s=0.0, crowded={"zoom": 2.0, "area_estimate": False}))
    assert rule.tiles is not None and rule.tiles[1] == 2.0  # the frame loop detects this zone on tiles too
    (event,) = rule.update(frame(0.0, people(12)))  # twelve persons seen, none confirmed as a track yet
    assert (event.body.count, event.body.class_name) == (12, "person")


def test_people_the_frames_bottom_cuts_count_in_a_zone_drawn_to_that_edge():
    count = ZoneCount(FULL, PERSON, smooth_s=0.0, area=False)
    count.update(frame(0.0, people(3, y=480.0)), None)  # near the camera: the boxes end at the last row
    assert count.count == 3
