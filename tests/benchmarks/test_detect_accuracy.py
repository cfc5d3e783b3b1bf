"""detect_accuracy's placing of the looks (--jitter, --skip, --phases), pure, on the scheduler's per-camera timing, no
model; and its pairing of events with the ground truth's."""

from __future__ import annotations

from agent.analytics.kinds.line_count import LineCountBody
from agent.analytics.kinds.wrong_way import WrongWayBody
from agent.core.units import NS_PER_S
from agent.runtime.scheduler import CameraSchedule
from agent.settings.detect import DetectSettings
from benchmarks.detect_accuracy import jittered, looks, shifted, skipping
from testbed.ground_truth import agreement


def _intervals_s(jitter: float, seed: int, count: int = 200) -> list[float]:
    schedule, pts, out = CameraSchedule(DetectSettings(fps=5.0)), 0, []
    with jittered(jitter, seed):
        for _ in range(count):
            schedule.detected(pts, None)
            assert schedule.last_ns == pts
            out.append((schedule.next_ns - pts) / NS_PER_S)
            pts = schedule.next_ns
    return out


def test_looks_are_due_within_the_jitter_of_the_interval_and_spread_over_it():
    intervals = _intervals_s(0.5, seed=0)
    assert all(0.1 - 1e-9 <= s <= 0.3 + 1e-9 for s in intervals)
    assert min(intervals) < 0.12 and max(intervals) > 0.28  # the whole range is used, not one value
    assert abs(sum(intervals) / len(intervals) - 0.2) < 0.01  # the mode's rate on average


def test_a_seed_gives_the_same_looks_and_the_patch_is_undone():
    assert _intervals_s(0.5, seed=3) == _intervals_s(0.5, seed=3) != _intervals_s(0.5, seed=4)
    schedule = CameraSchedule(DetectSettings(fps=5.0))
    schedule.detected(0, None)
    schedule.detected(10**9, None)  # the scheduler's own timing again: one interval on, phase kept
    assert schedule.next_ns == 10**9 + NS_PER_S // 5


def test_a_shifted_camera_looks_periodically_one_offset_later_and_the_patch_is_undone():
    frame = NS_PER_S // 10
    for k in range(3):
        schedule, due = CameraSchedule(DetectSettings(fps=10 / 3)), []
        with shifted(k * frame):
            schedule.detected(0, None)
            for _ in range(4):
                due.append(schedule.next_ns)
                schedule.detected(schedule.next_ns, None)
        assert due == [(3 + k + 3 * i) * frame for i in range(4)]  # every 3rd frame, phase k
    schedule = CameraSchedule(DetectSettings(fps=10 / 3))
    schedule.detected(0, None)
    assert schedule.next_ns == 3 * frame


def test_a_skipping_camera_looks_at_every_frame_but_the_skipped_ones_and_the_patch_is_undone():
    frame = NS_PER_S // 10
    schedule, pts, gaps = CameraSchedule(DetectSettings(fps=10.0)), 0, []
    with skipping(0.1, frame, seed=0):
        for _ in range(1000):
            schedule.detected(pts, None)
            gaps.append((schedule.next_ns - pts) // frame)
            pts = schedule.next_ns
    assert set(gaps) == {1, 2}  # the next frame, or the one after it: one frame skipped at a time
    assert 0.07 < gaps.count(2) / len(gaps) < 0.13
    schedule.detected(pts, None)
    assert schedule.next_ns == pts + frame


def test_a_mode_runs_once_per_phase_or_seed_and_once_without_a_rate():
    frame = NS_PER_S // 10
    assert len(looks({"fps": 10 / 3}, 0.0, 0.0, 1, True, frame)[0]) == 3
    assert len(looks({"fps": 5.0}, 0.0, 0.0, 1, True, frame)[0]) == 2
    assert len(looks({"fps": 5.0}, 0.5, 0.0, 6, False, frame)[0]) == 6
    assert len(looks({"fps": 10.0}, 0.0, 0.1, 4, False, frame)[0]) == 4
    assert len(looks({"fps": 5.0}, 0.0, 0.0, 6, False, frame)[0]) == 1  # seeds alone: the scheduler's own looks
    assert len(looks(None, 0.5, 0.0, 6, True, frame)[0]) == 1  # every frame: nothing to place


def test_the_result_says_how_the_looks_were_placed_even_for_one_run():
    frame = NS_PER_S // 10
    regular = {"jitter": 0.0, "skip": 0.0, "phases": False}
    assert looks({"fps": 5.0}, 0.5, 0.0, 1, False, frame)[1] == regular | {"jitter": 0.5}  # one seed: still jittered
    assert looks({"fps": 10.0}, 0.0, 0.1, 1, False, frame)[1] == regular | {"skip": 0.1}
    assert looks({"fps": 5.0}, 0.0, 0.0, 1, True, frame)[1] == regular | {"phases": True}
    assert looks(None, 0.5, 0.0, 6, True, frame)[1] == regular


def _crossing(direction: str, x: float) -> LineCountBody:
    return LineCountBody(line_id="mid", direction=direction, class_name="person", point=(x, 0.5), count_in=0, count_out=0)


def _wrong_way(state: str, x: float) -> WrongWayBody:
    return WrongWayBody(zone_id="plaza", state=state, class_name="person", point=(x, 0.5), distance=0.1, duration_ms=0)


def test_events_are_paired_one_by_one_with_the_truths_of_the_same_kind_nearby():
    truth = [(1.0, _crossing("in", 0.5)), (2.0, _crossing("out", 0.5)), (3.0, _wrong_way("started", 0.8)),
             (9.0, _wrong_way("ended", 0.6)), (20.0, _wrong_way("started", 0.3))]  # fmt: skip
    ours = [
        (1.5, _crossing("in", 0.52)),  # the truth's crossing, half a second later
        (2.0, _crossing("in", 0.5)),  # a crossing the other way than the truth's: extra, and the truth's missed
        (3.2, _wrong_way("started", 0.78)), (3.4, _wrong_way("started", 0.8)),  # one situation raised twice
        (9.0, _wrong_way("ended", 0.6)),  # an end is no event of its own
        (27.0, _wrong_way("started", 0.3)),  # the truth's second situation, but 7 s later: not it
    ]
    assert agreement(ours, truth) == {
        "mid in": {"hits": 1, "missed": 0, "extra": 1},
        "mid out": {"hits": 0, "missed": 1, "extra": 0},
        "plaza wrong_way": {"hits": 1, "missed": 1, "extra": 2},
    }
    assert agreement(truth, truth)["plaza wrong_way"] == {"hits": 2, "missed": 0, "extra": 0}
