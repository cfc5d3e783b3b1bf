import numpy as np

from agent.analytics.kinds.person_down import PersonDownRule, PersonDownSettings
from agent.core.types import Detections, Tracks
from tests.agent.rules.fixtures import FRAME_NS, PERSON, SIZE_WH

ZONE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)
STAND = (450, 300, 500, 450)  # 50 x 150 px
SIT = (440, 360, 510, 450)  # top dropped by 0.4 height, squarish
LIE = (400, 400, 550, 450)  # top dropped by 0.67 height, lying
TOWARDS = (440, 560, 510, 630)  # fallen towards the camera: squarish, top dropped by 1.7 heights
AT_EDGE = (960, 300, 1000, 450)  # upright at the frame's right side
ON_FLOOR = (400, 400, 560, 455)  # a silhouette lying where STAND stood
GOING_DOWN = (450, 340, 500, 450)  # still upright, but its top 0.27 height down: the fall has begun
SINKING = (450, 320, 500, 450)  # a silhouette standing where STAND stood, its top 0.13 height down
# the silhouette of a person seated in SIT: head and torso above the seat, thighs, lower legs
SEATED = [(455, 360, 495, 405), (440, 405, 510, 420), (490, 420, 510, 450)]


class Silhouette:
    """The silhouette analyzer's output as the rule reads it: a foreground mask at 1/10 of the frame.

    The rule's decision is tested on masks painted frame by frame; the real analyzer on frames is
    test_silhouette.py's, on the Le2i clips test_eval_falls.py's."""

    def __init__(self) -> None:
        self.mask = np.zeros((SIZE_WH[1] // 10, SIZE_WH[0] // 10), bool)

    def paint(self, boxes) -> None:
        """boxes: one box, a list of boxes, or None; frame pixels."""
        self.mask[:] = False
        for x1, y1, x2, y2 in [] if boxes is None else [boxes] if isinstance(boxes[0], int) else boxes:
            self.mask[y1 // 10 : y2 // 10, x1 // 10 : x2 // 10] = True


def states(spans, **kw):
    """spans: (detector box or None, foreground box or None, frames[, track id]) of one subject at 10 fps; the
    foreground defaults to the box itself (a person moving), the track id to 1. Returns the events' states and
    durations."""
    silhouette = Silhouette()
    rule = PersonDownRule("z", ZONE, PERSON, silhouette, PersonDownSettings(**kw))
    out, t = [], 0
    for span in spans:
        box, fg, n, tid = (*span, 1)[:4] if len(span) >= 3 else (span[0], span[0], span[1], 1)
        for _ in range(n):
            silhouette.paint(fg)
            xyxy = np.array([] if box is None else [box], np.float32).reshape(-1, 4)
            det = Detections(xyxy, np.full(len(xyxy), 0.9, np.float32), np.zeros(len(xyxy), np.int32))
            tracks = Tracks("cam", t * FRAME_NS, det, np.full(len(xyxy), tid, np.int64), np.zeros(0, np.int64), SIZE_WH)
            out += [(e.body.state, e.body.duration_ms) for e in rule.update(tracks)]
            t += 1
    return out, rule


def test_fall_and_stay_down_gives_one_situation_that_ends_when_up():
    events, r = states([(STAND, 20), (LIE, 40), (STAND, 30), (None, None, 40)], down_s=2.0)
    assert events == [("started", 2000), ("ended", 3900)]
    assert r.state_size() == 0


def test_sitting_and_crouching_briefly_do_not_fire():
    events, _ = states([(STAND, 20), (SIT, SEATED, 60), (STAND, 10), (LIE, 5), (STAND, 20)])
    assert events == []


def test_fall_towards_the_camera_counts_by_the_drop():
    events, _ = states([(STAND, 20), (TOWARDS, 30)])
    assert [s for s, _ in events] == ["started"]


def test_no_upright_reference_no_event():
    events, _ = states([(LIE, 50)])
    assert events == []


def test_a_fall_the_detector_does_not_see_is_found_in_the_silhouette():
    events, r = states([(STAND, 20), (GOING_DOWN, 1), (None, ON_FLOOR, 30), (None, None, 50)])
    assert [s for s, _ in events] == ["started", "ended"]
    assert r.state_size() == 0


def test_lying_down_slowly_does_not_fire():
    # sitting first for longer than fall_s: by the time the person lies, the drop was not a fall
    events, _ = states([(STAND, 20), (SIT, SEATED, 50), (LIE, 50)], fall_s=2.5)
    assert events == []


def test_leaving_the_frame_or_the_room_does_not_fire():
    going_down_at_edge = (960, 340, 1000, 450)
    assert states([(AT_EDGE, 20), (going_down_at_edge, 1), (None, (950, 400, 1000, 455), 40)])[0] == []  # the side
    assert states([(STAND, 20), (GOING_DOWN, 1), (None, None, 40)])[0] == []  # a door: nothing left where they stood


def test_legs_below_the_drop_are_not_a_body_on_the_floor():
    # the detector loses someone bending or crouching: what stays below the drop line is their legs, taller than wide
    legs = (460, 370, 490, 450)
    assert states([(STAND, 20), (GOING_DOWN, 1), (None, legs, 40)])[0] == []
    assert [s for s, _ in states([(STAND, 20), (GOING_DOWN, 1), (None, legs, 40)], blob_min_aspect=0.0)[0]] == ["started"]


def test_a_person_standing_unseen_is_not_down():
    standing = (440, 290, 510, 455)
    assert states([(STAND, 20), (GOING_DOWN, 1), (None, standing, 40)])[0] == []  # the detector misses them


def test_a_detection_on_still_furniture_is_not_traced_in_the_silhouette():
    # a "person" box that never moves is background: someone passing below it later is not its fall
    events, _ = states([(STAND, None, 20), (GOING_DOWN, None, 1), (None, ON_FLOOR, 40)])
    assert events == []


def test_a_person_hidden_while_walking_is_not_sought_in_the_silhouette():
    # the box vanished without going down first (someone walked in front): what lies below is someone else's
    events, _ = states([(STAND, 20), (None, ON_FLOOR, 40)])
    assert events == []


def test_a_person_the_detector_lost_standing_is_followed_down_in_the_silhouette():
    # lost while upright (no box going down), the silhouette shows them still there, then sinking, then lying
    events, r = states([(STAND, 20), (None, STAND, 5), (None, SINKING, 2), (None, ON_FLOOR, 30), (None, None, 50)])
    assert [s for s, _ in events] == ["started", "ended"]
    assert r.state_size() == 0


def test_a_lost_person_is_not_sought_without_their_silhouette_going_down():
    # their box had begun to sink, but their silhouette shows them standing again: what lies there later is not
    # their fall (someone else's, or a bag set down)
    assert states([(STAND, 20), (GOING_DOWN, 1), (None, STAND, 5), (None, ON_FLOOR, 30)])[0] == []
    # only a sliver of silhouette there (under standing_fg_min of the upper box): not them standing
    assert states([(STAND, 20), (None, (450, 320, 460, 450), 2), (None, ON_FLOOR, 30)])[0] == []
    # sinking unseen later than fall_s after the last upright box (sitting down slowly): not a fall
    assert states([(STAND, 20), (None, STAND, 15), (None, SINKING, 5), (None, ON_FLOOR, 30)])[0] == []


def test_a_lost_person_seen_standing_again_under_a_new_track_is_not_sought_in_the_silhouette():
    # the detector loses someone bending down (to set a bag down, or leaning over a table) and finds them standing
    # again under a new track: what stays low beside them (the bag, the table's edge) is not their fall
    for up_again in ((445, 310, 495, 460), (450, 330, 500, 420)):  # standing, or seated behind the table
        beside = [up_again, ON_FLOOR]
        assert states([(STAND, 20), (GOING_DOWN, 1), (None, ON_FLOOR, 5), (up_again, beside, 30, 2)])[0] == [], up_again
    # a new upright box below where they stood (their legs, seen as a person) is not them standing
    legs_box = (450, 390, 480, 455)
    events, _ = states([(STAND, 20), (GOING_DOWN, 1), (None, ON_FLOOR, 5), (legs_box, ON_FLOOR, 30, 2)])
    assert [s for s, _ in events] == ["started"]


def test_someone_coming_to_help_a_person_lying_there_does_not_end_their_situation():
    # the fallen person, lost by the detector, lies there; a helper stands beside them under a new track
    helper = (480, 300, 530, 450)
    fallen = [(STAND, 20), (GOING_DOWN, 1), (None, ON_FLOOR, 20)]
    assert [s for s, _ in states([*fallen, (helper, [helper, ON_FLOOR], 40, 2)])[0]] == ["started"]
    # nor does one who comes before the alarm (3 frames after the fall), beside them or taller, nearer the camera
    for other in (helper, (470, 200, 540, 450)):
        events, _ = states([(STAND, 20), (GOING_DOWN, 1), (None, ON_FLOOR, 3), (other, [other, ON_FLOOR], 40, 2)])
        assert [s for s, _ in events] == ["started"], other
    # and once they stand up there themselves the situation ends
    assert [s for s, _ in states([*fallen, (STAND, STAND, 40, 2)])[0]] == ["started", "ended"]


def test_the_situation_follows_the_person_to_a_new_track():
    silhouette = Silhouette()
    rule = PersonDownRule("z", ZONE, PERSON, silhouette, PersonDownSettings(down_s=1.0))
    events = []
    for t in range(60):
        box, tid = (STAND, 1) if t < 20 else (LIE, 2)  # the fall broke the track: a new id for the lying box
        silhouette.paint(box)
        det = Detections(np.array([box], np.float32), np.full(1, 0.9, np.float32), np.zeros(1, np.int32))
        ended = np.array([1] if t == 20 else [], np.int64)
        tracks = Tracks("cam", t * FRAME_NS, det, np.array([tid], np.int64), ended, SIZE_WH)
        events += [(e.body.state, e.track_id) for e in rule.update(tracks)]
    assert events == [("started", 1)]
