import numpy as np
import pytest
from pydantic import ValidationError

from agent.analytics.kinds.wrong_way import WrongWayRule, WrongWaySettings
from tests.agent.rules.fixtures import PERSON, run

ZONE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)


def rule(distance=0.1):
    return WrongWayRule("z", ZONE, PERSON, WrongWaySettings(direction=(1.0, 0.0), min_distance=distance))


def walk(xs):
    return [([(1, x, 0.5)], ()) for x in xs] + [([], (1,))]


@pytest.mark.parametrize(
    "xs, expected",
    [
        (np.linspace(0.2, 0.8, 20), []),  # the allowed way
        (np.linspace(0.8, 0.2, 20), ["started", "ended"]),  # against it
        (np.linspace(0.8, 0.75, 20), []),  # against it, but not far enough
        (np.r_[np.linspace(0.2, 0.6, 10), np.linspace(0.6, 0.4, 10)], ["started", "ended"]),  # turns back
        (0.5 + 0.03 * np.sin(np.arange(30)), []),  # jitter in place
    ],
)
def test_against_the_direction_for_the_distance(xs, expected):
    r = rule()
    bodies = run(r, walk(xs))
    assert [b.state for b in bodies] == expected
    assert all(b.distance >= 0.1 for b in bodies)
    assert r.state_size() == 0


def test_duration_runs_from_the_moment_it_went_wrong():
    bodies = run(rule(), walk(np.linspace(0.8, 0.2, 13)))  # 0.05 per frame: 0.1 reached at frame 2
    assert [(b.state, b.duration_ms) for b in bodies] == [("started", 0), ("ended", 1000)]


def test_direction_must_not_be_zero():
    with pytest.raises(ValidationError):
        WrongWaySettings(direction=(0.0, 0.0))
