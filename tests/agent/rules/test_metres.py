"""Rules in metres where the camera has a ground calibration: wrong-way distance, crowd speeds, the
abandoned object's owner radius; each refused clearly without one."""

from __future__ import annotations

import numpy as np
import pytest

from agent.analytics.base import ClassSelector
from agent.analytics.kinds.abandoned import AbandonedRule, AbandonedSettings
from agent.analytics.kinds.crowd_movement import CrowdMovementRule, CrowdMovementSettings
from agent.analytics.kinds.wrong_way import WrongWayRule, WrongWaySettings
from agent.core.ground import GroundPlane
from tests.agent.rules.fixtures import CLASSES, PERSON, run

FULL = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)
# the frame sees a 20 m x 20 m square from straight above: 1 normalised unit = 20 m
GROUND = GroundPlane(FULL, np.array([(0.0, 0.0), (20.0, 0.0), (20.0, 20.0), (0.0, 20.0)]))


def test_wrong_way_distance_in_metres():
    rule = WrongWayRule("z", FULL, PERSON, WrongWaySettings(direction=(1.0, 0.0), min_distance_m=1.45), GROUND)
    # 0.005 a frame against the direction: 0.1 m; past 1.45 m after 15 frames
    bodies = run(rule, [([(1, 0.5 - 0.005 * t, 0.5)], ()) for t in range(20)])
    (started,) = bodies
    assert started.unit == "m" and started.distance == pytest.approx(1.5, abs=0.01)


def test_crowd_speed_in_metres_per_second():
    rule = CrowdMovementRule("z", FULL, PERSON, CrowdMovementSettings(), GROUND)
    frames, x = [], np.array([0.05, 0.1, 0.15])
    for t in range(140):  # 10 s at 0.5 m/s (0.0025 a frame at 10 fps), then 2.5 m/s
        x = x + (0.0025 if t < 100 else 0.0125)
        frames.append(([(i, float(xi), 0.3 + 0.1 * i) for i, xi in enumerate(x)], ()))
    started = [b for b in run(rule, frames) if b.state == "started"]
    assert len(started) == 1 and 2.0 <= started[0].speed_mps <= 2.5  # the 1 s window still holds some slow steps


def test_owner_radius_in_metres():
    bag = ClassSelector(["backpack"], CLASSES, {"backpack": "bag"})
    settings = AbandonedSettings(unattended_s=1.0, owner_radius_m=2.0)
    rule = AbandonedRule("z", FULL, bag, PERSON, None, settings, GROUND)
    # a still bag at x 0.5; its owner 1.6 m away (0.08) stays: attended; then 3 m away (0.15): unattended
    near = [([(1, 0.5, 0.5, 2), (2, 0.58, 0.5)], ())] * 30
    far = [([(1, 0.5, 0.5, 2), (2, 0.65, 0.5)], ())] * 30
    assert run(rule, near) == []
    assert [b.state for b in run(rule, far)] == ["started"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: WrongWayRule("z", FULL, PERSON, WrongWaySettings(direction=(1.0, 0.0), min_distance_m=1.0)),
        lambda: AbandonedRule("z", FULL, PERSON, PERSON, None, AbandonedSettings(owner_radius_m=2.0)),
    ],
)
def test_metres_without_a_calibration_is_an_error_naming_it(build):
    with pytest.raises(ValueError, match="ground calibration"):
        build()
