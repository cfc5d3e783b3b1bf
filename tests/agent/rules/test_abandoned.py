import numpy as np

from agent.analytics.base import ClassSelector
from agent.analytics.kinds.abandoned import AbandonedRule, AbandonedSettings
from tests.agent.rules.fixtures import CLASSES, FRAME_NS, run, tracks

ZONE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)
CMAP = {"backpack": "bag"}
PERSONS = ClassSelector(["person"], CLASSES, CMAP)
BAGS = ClassSelector(["bag"], CLASSES, CMAP)


class FakeStatic:
    """Stands in for the static-foreground analyzer: a settable list of normalised boxes, and when each first
    counted as static.

    The rule's timing and ownership are tested on boxes set frame by frame; the real analyzer on frames is
    tests/agent/rules/test_frame_rules.py's, on ABODA the alarms evaluation's."""

    def __init__(self) -> None:
        self.boxes = np.zeros((0, 4), np.float32)
        self.static_since_ns = np.zeros(0, np.int64)


def rule(analyzer=None):
    s = AbandonedSettings(unattended_s=1.0, owner_radius=0.1, grace_s=0.3)
    return AbandonedRule("z", ZONE, BAGS, PERSONS, analyzer, s)


BAG = (9, 0.5, 0.5, 2)  # class 2: backpack -> bag


def test_bag_left_alone_starts_once_and_ends_when_taken():
    r = rule()
    with_owner = ([BAG, (1, 0.53, 0.5)], ())
    alone = ([BAG], (1,))
    bodies = run(r, [with_owner] * 30 + [alone] * 20 + [([], (9,))])
    assert [(b.state, b.source) for b in bodies] == [("started", "detection"), ("ended", "detection")]
    assert bodies[0].duration_ms == 1000
    assert r.state_size() == 0


def test_attended_or_moving_bags_never_fire():
    r = rule()
    owner_near = [([BAG, (1, 0.53, 0.5)], ())] * 40
    carried = [([(9, 0.1 + 0.01 * t, 0.5, 2)], ()) for t in range(40)]
    assert run(r, owner_near + [([], (1, 9))]) == []
    assert run(rule(), carried) == []


def static_run(person_at, region=(0.5, 0.5, 0.51, 0.51), frames=60, reported=10, static_since=10):
    """A static region reported for 30 frames from frame `reported` (its box wobbling by a pixel), static since frame
    `static_since`, and a person at `person_at(t)` (x, y) or absent (None) in each frame. Returns the rule and
    the events."""
    fake = FakeStatic()
    r = rule(fake)
    events = []
    for t in range(frames):
        box = [*region[:3], region[3] + 0.001 * (t % 2)]
        shown = reported <= t < reported + 30
        fake.boxes = np.array([box] if shown else [], np.float32).reshape(-1, 4)
        fake.static_since_ns = np.array([static_since * FRAME_NS] if shown else [], np.int64)
        xy = person_at(t)
        events += r.update(tracks(t, [] if xy is None else [(1, *xy)]))
    return r, events


def test_static_region_left_by_its_owner_keeps_its_key_and_fires_once():
    # the owner stands by the region while it appears, walks off from frame 12 and is gone at frame 20
    r, events = static_run(lambda t: (0.52, 0.53) if t < 12 else (0.52 + 0.05 * (t - 11), 0.53) if t < 20 else None)
    bodies = [e.body for e in events]
    assert [(b.state, b.source) for b in bodies] == [("started", "foreground"), ("ended", "foreground")]
    # the region is the situation's subject, so its started and ended pair up; never a person's track id (1)
    assert events[0].track_id == events[1].track_id < 0
    assert bodies[0].reasons == ["static_region", "owner_left"]
    for t in range(60, 120):  # a while with nothing: the story and the recent persons are forgotten
        r.update(tracks(t, []))
    assert r.state_size() == 0


def test_static_region_reported_late_finds_the_owner_who_was_there_when_it_became_static():
    """The analyzer holds a region back while its outline is no sharper than the background's there (a bag on a
    patterned floor) and reports it 15 s after it first counted as static: its owner, beside it then and gone
    long before the report, is still its owner (ABODA video 4 scaled to 720p or at half its frame rate: the bag
    was reported 3 s late and its owner was missed)."""
    owner = lambda t: (0.52, 0.53) if t < 5 else (0.52 + 0.05 * (t - 4), 0.53) if t < 12 else None  # noqa: E731
    bodies = [e.body for e in static_run(owner, frames=200, reported=160, static_since=10)[1]]
    assert [(b.state, b.source) for b in bodies] == [("started", "foreground"), ("ended", "foreground")]
    assert bodies[0].reasons == ["static_region", "owner_left"]
    # someone who passed by long before the region became still is not its owner, nor who passed by after
    assert static_run(owner, frames=200, reported=160, static_since=100)[1] == []
    passer = lambda t: (0.52, 0.53) if 80 <= t < 90 else (0.9, 0.1) if 90 <= t < 100 else None  # noqa: E731
    assert static_run(passer, frames=200, reported=160, static_since=10)[1] == []


def test_static_region_without_an_owner_who_left_never_fires():
    # nobody near when it appeared (a lighting change, a shadow, headlights)
    assert static_run(lambda t: None)[1] == []
    assert static_run(lambda t: (0.9, 0.1))[1] == []
    # its "owner" never walked away, the track just ended beside it (a person lying still, lost by the detector)
    assert static_run(lambda t: (0.52, 0.53) if t < 15 else None)[1] == []


def test_person_sized_static_region_is_never_an_abandoned_object():
    # the person walks off, but the region is as big as the person's box: a person lying still, not luggage
    r, events = static_run(lambda t: (0.52, 0.53) if t < 12 else (0.52 + 0.05 * (t - 11), 0.53) if t < 20 else None,
                           region=(0.5, 0.5, 0.52, 0.53))  # fmt: skip
    assert events == []
