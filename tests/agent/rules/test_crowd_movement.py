import numpy as np

from agent.analytics.kinds.crowd_movement import (
    CrowdMovementRule,
    CrowdMovementSettings,
)
from tests.agent.rules.fixtures import PERSON, run

ZONE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)


def walkers(speeds_per_frame, n=4):
    """Frames of `n` subjects walking right, each frame's step given by `speeds_per_frame`."""
    frames, x = [], 0.05
    for step in speeds_per_frame:
        x += step
        frames.append(([(i, x, 0.2 + 0.15 * i) for i in range(n)], ()))
    return frames


def rule():
    return CrowdMovementRule("z", ZONE, PERSON, CrowdMovementSettings(baseline_s=5.0, warmup_s=3.0, off_s=1.0))


def test_sudden_shared_speed_up_gives_one_situation():
    r = rule()
    bodies = run(r, walkers([0.0015] * 100 + [0.006] * 100))
    assert [b.state for b in bodies] == ["started", "ended"]  # the new pace becomes the baseline
    assert bodies[0].value >= 2.5 and bodies[0].count == 4


def test_steady_pace_and_a_lone_runner_give_nothing():
    assert run(rule(), walkers([0.004] * 200)) == []
    assert run(rule(), walkers([0.0015] * 100 + [0.006] * 100, n=1)) == []


def test_state_empties_when_the_tracks_end():
    r = rule()
    run(r, walkers([0.002] * 50) + [([], (0, 1, 2, 3))])
    assert r.state_size() == 0
