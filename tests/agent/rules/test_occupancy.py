import numpy as np

from agent.analytics.kinds.occupancy import OccupancyRule, OccupancySettings
from tests.agent.rules.fixtures import area, run

ZONE = np.array([[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], np.float32)


def rule(settle_s=0.3):
    return OccupancyRule(area(ZONE), OccupancySettings(settle_s=settle_s))


def test_reports_after_settling_and_back_to_zero():
    two = ([(1, 0.2, 0.5), (2, 0.3, 0.5)], ())
    bodies = run(r := rule(), [two] * 5 + [([], (1, 2))] * 5)
    assert [(b.count, b.previous) for b in bodies] == [(2, 0), (0, 2)]
    assert r.state_size() == 0


def test_flapping_shorter_than_settle_is_not_reported():
    one, two = ([(1, 0.2, 0.5)], ()), ([(1, 0.2, 0.5), (2, 0.3, 0.5)], ())
    bodies = run(rule(settle_s=0.5), [one] * 8 + [two, one] * 4)
    assert [(b.count, b.previous) for b in bodies] == [(1, 0)]


def test_outside_and_other_classes_do_not_count():
    frame = ([(1, 0.8, 0.5), (2, 0.2, 0.5, 1)], ())
    assert run(rule(settle_s=0.0), [frame] * 3) == []
