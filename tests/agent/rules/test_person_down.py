import numpy as np

from agent.analytics.kinds.person_down import PersonDownRule, PersonDownSettings
from agent.core.types import Detections, Tracks
from tests.agent.rules.fixtures import FRAME_NS, PERSON, SIZE_WH

ZONE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)
STAND = (450, 300, 500, 450)  # 50 x 150 px
SIT = (440, 360, 510, 450)  # top dropped by 0.4 height, squarish
LIE = (400, 400, 550, 450)  # top dropped by 0.67 height, lying
TOWARDS = (440, 560, 510, 630)  # fallen towards the camera: squarish, top dropped by 1.7 heights


def frames(*spans):
    """(box or None, frames) spans of one subject at 10 fps -> Tracks; None: not seen."""
    t = 0
    for box, n in spans:
        for _ in range(n):
            rows = [] if box is None else [box]
            xyxy = np.array(rows, np.float32).reshape(-1, 4)
            det = Detections(xyxy, np.full(len(rows), 0.9, np.float32), np.zeros(len(rows), np.int32))
            yield Tracks("cam", t * FRAME_NS, det, np.ones(len(rows), np.int64), np.zeros(0, np.int64), SIZE_WH)
            t += 1


def states(spans, **kw):
    r = PersonDownRule("z", ZONE, PERSON, PersonDownSettings(**kw))
    return [(e.body.state, e.body.duration_ms) for t in frames(*spans) for e in r.update(t)], r


def test_fall_and_stay_down_gives_one_situation_that_ends_when_up():
    events, r = states([(STAND, 20), (LIE, 40), (STAND, 30), (None, 40)])
    assert events == [("started", 2000), ("ended", 3900)]
    assert r.state_size() == 0


def test_sitting_and_crouching_briefly_do_not_fire():
    events, _ = states([(STAND, 20), (SIT, 60), (STAND, 10), (LIE, 10), (STAND, 20)])
    assert events == []


def test_fall_towards_the_camera_counts_by_the_drop():
    events, _ = states([(STAND, 20), (TOWARDS, 30)])
    assert [s for s, _ in events] == ["started"]


def test_no_upright_reference_no_event():
    events, _ = states([(LIE, 50)])
    assert events == []
