import numpy as np
import pytest

from agent.analytics.kinds.intrusion import IntrusionRule, IntrusionSettings
from tests.agent.rules.fixtures import PERSON, run

ZONE = np.array([[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]], np.float32)


def rule(dwell_s=0.5, grace_s=0.2):
    return IntrusionRule("z", ZONE, PERSON, IntrusionSettings(dwell_s=dwell_s, exit_grace_s=grace_s))


@pytest.mark.parametrize(
    "frames_inside, dwell_s, expect_started",
    [(3, 0.5, False), (6, 0.5, True), (1, 0.0, True)],
)
def test_starts_only_after_dwell(frames_inside, dwell_s, expect_started):
    r = rule(dwell_s)
    frames = [([(1, 0.5, 0.5)], ())] * frames_inside + [([], (1,))]
    states = [b.state for b in run(r, frames)]
    assert states == (["started", "ended"] if expect_started else [])
    assert r.state_size() == 0


def test_one_start_and_one_end_with_duration():
    r = rule(dwell_s=0.5, grace_s=0.2)
    frames = [([(1, 0.5, 0.5)], ())] * 10 + [([(1, 0.9, 0.9)], ())] * 5
    bodies = run(r, frames)
    assert [b.state for b in bodies] == ["started", "ended"]
    assert bodies[0].duration_ms == 500
    assert bodies[1].duration_ms == 900  # entered at frame 0, last seen inside at frame 9
    assert r.state_size() == 0


def test_edge_jitter_within_grace_is_one_intrusion():
    r = rule(dwell_s=0.2, grace_s=0.5)
    inside, outside = ([(1, 0.5, 0.5)], ()), ([(1, 0.65, 0.5)], ())
    bodies = run(r, [inside] * 4 + [outside, inside] * 5 + [outside] * 8)
    assert [b.state for b in bodies] == ["started", "ended"]


def test_other_classes_ignored_and_state_evicted_on_end():
    r = rule(dwell_s=0.0)
    bodies = run(r, [([(1, 0.5, 0.5, 1), (2, 0.5, 0.5)], ()), ([], (1, 2))])
    assert [(b.state, b.class_name) for b in bodies] == [("started", "person"), ("ended", "person")]
    assert r.state_size() == 0


def test_a_person_the_frames_bottom_cuts_is_in_a_zone_drawn_to_that_edge():
    # near the camera the box ends at the frame's last row: its anchor is on the edge, and is in the zone
    lower_half = np.array([[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]], np.float32)
    r = IntrusionRule("z", lower_half, PERSON, IntrusionSettings(dwell_s=0.0, exit_grace_s=0.2))
    assert [b.state for b in run(r, [([(1, 0.5, 1.0)], ())] * 3)] == ["started"]
