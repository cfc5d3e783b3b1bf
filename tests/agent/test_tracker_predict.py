"""ByteTracker.predict: the boxes of the frames the detector did not look at."""

from __future__ import annotations

import numpy as np

from agent.core.tracker import ByteTracker, TrackerConfig
from agent.core.types import Detections

FRAME_NS = 100_000_000  # 10 fps
SIZE = (768, 576)


def _walker(k: int, x0: float = 100.0, speed_px_s: float = 50.0) -> np.ndarray:
    """A 40x100 box walking right at speed_px_s, at frame k."""
    x = x0 + speed_px_s * k * FRAME_NS / 1e9
    return np.array([x, 200.0, x + 40.0, 300.0], np.float32)


def _dets(*boxes: np.ndarray, score: float = 0.9) -> Detections:
    n = len(boxes)
    return Detections(np.stack(boxes).reshape(n, 4), np.full(n, score, np.float32), np.zeros(n, np.int32))


def test_predicted_boxes_follow_the_motion_between_detections():
    tracker = ByteTracker(TrackerConfig(), "cam")
    for k in range(0, 20, 4):  # detections every 4th frame
        tracks = tracker.update(_dets(_walker(k), score=0.8), k * FRAME_NS, SIZE)
    track_id = int(tracks.track_id[0])
    for k in (17, 18, 19):
        predicted = tracker.predict(k * FRAME_NS, SIZE)
        assert predicted.track_id.tolist() == [track_id] and len(predicted.ended) == 0
        assert np.abs(predicted.detections.xyxy[0] - _walker(k)).max() < 3.0  # within 3 px of where it walked
        assert predicted.detections.confidence[0] == np.float32(0.8)  # the last detection's score and class
        assert predicted.detections.class_id[0] == 0


def test_predict_changes_nothing():
    """Detecting every 2nd frame with predictions between associates exactly as without them."""
    with_predictions, without = ByteTracker(TrackerConfig(), "cam"), ByteTracker(TrackerConfig(), "cam")
    for k in range(12):
        if k % 2:
            with_predictions.predict(k * FRAME_NS, SIZE)
            continue
        dets = _dets(_walker(k), _walker(k, x0=400.0, speed_px_s=-30.0))
        a = with_predictions.update(dets, k * FRAME_NS, SIZE)
        b = without.update(dets, k * FRAME_NS, SIZE)
        assert a.track_id.tolist() == b.track_id.tolist()
        np.testing.assert_array_equal(a.detections.xyxy, b.detections.xyxy)


def test_only_tracks_matched_at_the_last_update_are_predicted():
    tracker = ByteTracker(TrackerConfig(min_hits=2), "cam")
    tracker.update(_dets(_walker(0)), 0, SIZE)
    assert len(tracker.predict(FRAME_NS, SIZE)) == 0  # unconfirmed: never reported
    tracker.update(_dets(_walker(2)), 2 * FRAME_NS, SIZE)
    assert len(tracker.predict(3 * FRAME_NS, SIZE)) == 1
    tracker.update(Detections.empty(), 4 * FRAME_NS, SIZE)  # missed: lost, not reported
    assert len(tracker.predict(5 * FRAME_NS, SIZE)) == 0
    assert len(ByteTracker(TrackerConfig(), "cam").predict(0, SIZE)) == 0


def test_predicted_boxes_stay_inside_the_frame():
    tracker = ByteTracker(TrackerConfig(min_hits=1), "cam")
    for k in range(3):
        tracker.update(_dets(_walker(k, x0=700.0, speed_px_s=200.0)), k * FRAME_NS, SIZE)
    xyxy = tracker.predict(30 * FRAME_NS, SIZE).detections.xyxy
    assert xyxy[:, [0, 2]].max() <= SIZE[0] and xyxy.min() >= 0

def _detect_every(tracker: ByteTracker, period: int, frames: range, missed: set[int]) -> list:
    """Detect every `period`-th frame (predicting the others), with no detection at the frames in `missed`."""
    out = []
    for k in frames:
        if k % period:
            tracker.predict(k * FRAME_NS, SIZE)
            continue
        out.append(tracker.update(Detections.empty() if k in missed else _dets(_walker(k)), k * FRAME_NS, SIZE))
    return out


def test_detecting_a_few_times_a_second_one_missed_look_does_not_end_the_track():
    """At 1.5 looks a second one miss leaves a track unseen for 1.33 s, past lost_timeout_s (1 s): it
    still holds (lost_min_looks = 2); two misses in a row end it."""
    period = 7  # 0.7 s between looks
    once = _detect_every(ByteTracker(TrackerConfig(), "cam"), period, range(0, 57), missed={21})
    assert {int(t) for r in once for t in r.track_id} == {1} and all(len(r.ended) == 0 for r in once)
    twice = _detect_every(ByteTracker(TrackerConfig(), "cam"), period, range(0, 57), missed={21, 28})
    assert [r.ended.tolist() for r in twice if len(r.ended)] == [[1]]
    assert int(twice[-1].track_id[0]) == 2


def test_detecting_every_frame_only_the_timeout_counts():
    tracker = ByteTracker(TrackerConfig(lost_min_looks=100), "cam")
    out = _detect_every(tracker, 1, range(0, 30), missed=set(range(5, 17)))  # 1.2 s of misses
    assert [r.ended.tolist() for r in out if len(r.ended)] == [[1]]
