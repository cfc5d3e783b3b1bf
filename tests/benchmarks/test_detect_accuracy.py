"""detect_accuracy's irregular looks (--jitter): pure, on the scheduler's per-camera timing, no model."""

from __future__ import annotations

from agent.core.units import NS_PER_S
from agent.runtime.scheduler import CameraSchedule
from agent.settings.detect import DetectSettings
from benchmarks.detect_accuracy import jittered


def _intervals_s(jitter: float, seed: int, looks: int = 200) -> list[float]:
    schedule, pts, out = CameraSchedule(DetectSettings(fps=5.0)), 0, []
    with jittered(jitter, seed):
        for _ in range(looks):
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
