import numpy as np
import pytest

from agent.analytics.base import ClassSelector
from agent.analytics.kinds.weapon import WeaponRule, WeaponSettings
from tests.agent.rules.fixtures import CLASSES, run

ZONE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)
# a test class map: "car" stands in for a weapon class
WEAPONS = ClassSelector(["weapon", "person"], CLASSES, {"car": "weapon"}).only({"weapon"})


def rule():
    return WeaponRule("z", ZONE, WEAPONS, WeaponSettings(persist_s=0.3, exit_grace_s=0.2))


@pytest.mark.parametrize("frames_seen, expected", [(2, []), (6, ["started", "ended"])])
def test_persisting_weapon_class_starts_once(frames_seen, expected):
    r = rule()
    seen = ([(1, 0.5, 0.5, 1), (2, 0.3, 0.5, 0)], ())  # class 1 (car -> weapon), class 0 (person)
    bodies = run(r, [seen] * frames_seen + [([], (1, 2))])
    assert [(b.state, b.class_name) for b in bodies] == [(s, "car") for s in expected]
    assert r.state_size() == 0
