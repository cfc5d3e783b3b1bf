import numpy as np
import pytest

from agent.analytics.kinds.loitering import LoiteringRule, LoiteringSettings
from tests.agent.rules.fixtures import PERSON, run

ZONE = np.array([[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]], np.float32)


def rule(dwell_s=1.0, grace_s=0.3):
    return LoiteringRule("z", ZONE, PERSON, LoiteringSettings(dwell_s=dwell_s, exit_grace_s=grace_s))


@pytest.mark.parametrize("frames_inside, expected", [(5, []), (15, ["started", "ended"])])
def test_one_start_and_end_only_beyond_the_dwell(frames_inside, expected):
    r = rule()
    bodies = run(r, [([(1, 0.5, 0.5)], ())] * frames_inside + [([], (1,))])
    assert [b.state for b in bodies] == expected
    if expected:
        assert [b.duration_ms for b in bodies] == [1000, (frames_inside - 1) * 100]
    assert r.state_size() == 0


def test_short_absences_within_grace_are_one_situation():
    inside, outside = ([(1, 0.5, 0.5)], ()), ([(1, 0.9, 0.5)], ())
    r = rule(grace_s=0.5)
    bodies = run(r, ([inside] * 8 + [outside] * 2) * 3 + [outside] * 10)
    assert [b.state for b in bodies] == ["started", "ended"]
    assert r.state_size() == 0
