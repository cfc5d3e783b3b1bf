import numpy as np
import pytest

from agent.analytics.kinds.line_count import LineCountRule, LineSettings
from tests.agent.rules.fixtures import PERSON, run

# a->b points down the frame: its right-hand side on screen is x < 0.5 (west)
LINE = np.array([[0.5, 0.2], [0.5, 0.8]], np.float32)


def rule(margin=0.01):
    return LineCountRule("l", LINE, PERSON, LineSettings(margin=margin))


def walk(tid, xs, y=0.5):
    return [([(tid, x, y)], ()) for x in xs]


@pytest.mark.parametrize(
    "xs, expected",
    [
        ([0.3, 0.4, 0.6, 0.7], [("out", 0, 1)]),  # eastwards: from the right of a->b to its left
        ([0.7, 0.6, 0.4, 0.3], [("in", 1, 0)]),
        ([0.3, 0.4, 0.45], []),  # never crosses
        ([0.3, 0.7, 0.3], [("out", 0, 1), ("in", 1, 1)]),  # there and back again
    ],
)
def test_direction_and_counts(xs, expected):
    bodies = run(rule(), walk(1, xs) + [([], (1,))])
    assert [(b.direction, b.count_in, b.count_out) for b in bodies] == expected


def test_jitter_on_the_line_counts_once():
    xs = [0.3, 0.495, 0.505, 0.497, 0.503, 0.499, 0.7]
    bodies = run(rule(margin=0.05), walk(1, xs))
    assert [b.direction for b in bodies] == ["out"]


def test_passing_beyond_the_end_does_not_count():
    bodies = run(rule(), walk(1, [0.3, 0.7], y=0.9))
    assert bodies == []


def test_counts_per_class_and_state_evicted():
    r = rule()
    frames = [([(1, 0.3, 0.5), (2, 0.3, 0.4, 2)], ()), ([(1, 0.7, 0.5), (2, 0.7, 0.4, 2)], ()), ([], (1, 2))]
    bodies = run(r, frames)
    assert [(b.class_name, b.count_out) for b in bodies] == [("person", 1)]  # backpack is not watched
    assert r.state_size() == 0
