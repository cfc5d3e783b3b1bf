import numpy as np
import pytest

from agent.analytics.kinds.crowd_density import CrowdDensityRule, CrowdDensitySettings
from tests.agent.rules.fixtures import area, run

ZONE = np.array([[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], np.float32)


def crowd(n, ended=()):
    return ([(i, 0.1 + 0.03 * i, 0.5) for i in range(n)], ended)


def rule(**kw):
    kw = {"on_s": 0.5, "off_s": 0.5, "smooth_s": 0.0, **kw}
    return CrowdDensityRule(area(ZONE), CrowdDensitySettings(**kw))


@pytest.mark.parametrize(
    "settings, value, unit",
    [({"max_count": 5}, 6.0, "per_zone"), ({"area_m2": 2.0, "max_per_m2": 2.5}, 3.0, "per_m2")],
)
def test_one_situation_per_crowd_with_value_and_unit(settings, value, unit):
    r = rule(**settings)
    bodies = run(r, [crowd(6)] * 10 + [crowd(0, tuple(range(6)))] * 10)
    assert [(b.state, b.density, b.unit, b.estimate) for b in bodies] == [
        ("started", value, unit, "detections"), ("ended", 0.0, unit, "detections")
    ]
    assert [b.duration_ms for b in bodies] == [500, 900]
    assert r.state_size() == 0


def test_hysteresis_holds_between_release_and_threshold():
    # threshold 5, release 4: 4 persons keep it on, 3 end it
    bodies = run(rule(max_count=5, release_ratio=0.8), [crowd(5)] * 8 + [crowd(4)] * 20 + [crowd(3)] * 8)
    assert [b.state for b in bodies] == ["started", "ended"]


def test_flicker_above_threshold_shorter_than_on_s_is_nothing():
    assert run(rule(max_count=5), ([crowd(6)] * 4 + [crowd(2)] * 8) * 3) == []
