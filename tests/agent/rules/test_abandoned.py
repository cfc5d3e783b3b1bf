import numpy as np

from agent.analytics.base import ClassSelector
from agent.analytics.kinds.abandoned import AbandonedRule, AbandonedSettings
from tests.agent.rules.fixtures import CLASSES, run, tracks

ZONE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)
CMAP = {"backpack": "bag"}
PERSONS = ClassSelector(["person"], CLASSES, CMAP)
BAGS = ClassSelector(["bag"], CLASSES, CMAP)


class FakeStatic:
    """Stands in for the static-foreground analyzer: a settable list of normalised boxes."""

    def __init__(self) -> None:
        self.boxes = np.zeros((0, 4), np.float32)


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


def test_static_region_keeps_its_key_and_fires_once():
    fake = FakeStatic()
    r = rule(fake)
    bodies = []
    for t in range(40):
        # the region's box wobbles by a pixel between samples; it is still one object
        fake.boxes = np.array([[0.5, 0.5, 0.55, 0.56 + 0.001 * (t % 2)]], np.float32) if t < 30 else np.zeros((0, 4))
        bodies += [e.body for e in r.update(tracks(t, []))]
    assert [(b.state, b.source) for b in bodies] == [("started", "foreground"), ("ended", "foreground")]
    assert r.state_size() == 0
