import numpy as np
import pytest
from pydantic import ValidationError

from agent.analytics.kinds.wrong_way import WrongWayRule, WrongWaySettings
from tests.agent.rules.fixtures import PERSON, run, tracks

ZONE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)


def rule(distance=0.1):
    return WrongWayRule("z", ZONE, PERSON, WrongWaySettings(direction=(1.0, 0.0), min_distance=distance))


def walk(xs):
    return [([(1, x, 0.5)], ()) for x in xs] + [([], (1,))]


@pytest.mark.parametrize(
    "xs, expected",
    [
        (np.linspace(0.2, 0.8, 20), []),  # the allowed way
        (np.linspace(0.8, 0.2, 20), ["started", "ended"]),  # against it
        (np.linspace(0.8, 0.75, 20), []),  # against it, but not far enough
        (np.r_[np.linspace(0.2, 0.6, 10), np.linspace(0.6, 0.4, 10)], ["started", "ended"]),  # turns back
        (0.5 + 0.03 * np.sin(np.arange(30)), []),  # jitter in place
    ],
)
def test_against_the_direction_for_the_distance(xs, expected):
    r = rule()
    bodies = run(r, walk(xs))
    assert [b.state for b in bodies] == expected
    assert all(b.distance >= 0.1 for b in bodies)
    assert r.state_size() == 0


def test_duration_runs_from_the_moment_it_went_wrong():
    bodies = run(rule(), walk(np.linspace(0.8, 0.2, 13)))  # 0.05 per frame: 0.1 reached at frame 2
    assert [(b.state, b.duration_ms) for b in bodies] == [("started", 0), ("ended", 1000)]


def test_direction_must_not_be_zero():
    with pytest.raises(ValidationError):
        WrongWaySettings(direction=(0.0, 0.0))


def _broken_walk(gap: int, jump: float) -> list:
    """Track 1 walks against the direction, vanishes for `gap` frames and track 2 appears `jump` further on
    (a box is 0.04 tall: fixtures.tracks) and walks on; both end at the last frame."""
    first = [([(1, x, 0.5)], ()) for x in np.linspace(0.8, 0.6, 9)]
    hidden = [([], ()) for _ in range(gap)]
    second = [([(2, x, 0.5)], ()) for x in np.linspace(0.6 - jump, 0.2, 12)]
    return first + hidden + second + [([], (1, 2))]


def test_a_track_broken_by_an_occlusion_carries_the_situation_on():
    bodies = run(rule(), _broken_walk(gap=3, jump=0.02))  # reappears half a box height on, 0.3 s later
    assert [b.state for b in bodies] == ["started", "ended"]


def test_the_subject_of_a_carried_situation_is_the_track_that_started_it():
    r = rule()
    subjects = []
    for t, (rows, ended) in enumerate(_broken_walk(gap=3, jump=0.02)):
        subjects += [(e.body.state, e.track_id) for e in r.update(tracks(t, rows, ended))]
    assert subjects == [("started", 1), ("ended", 1)]
    assert r.state_size() == 0


@pytest.mark.parametrize(
    "gap, jump",
    [
        (3, 0.2),  # appears 5 box heights away: another person
        (15, 0.02),  # appears after exit_grace_s (1 s): the first situation has ended
    ],
)
def test_a_new_track_far_away_or_too_late_is_its_own_situation(gap, jump):
    bodies = run(rule(), _broken_walk(gap, jump))
    assert [b.state for b in bodies].count("started") == 2


def test_no_relink_when_turned_off_or_while_the_first_track_is_still_seen():
    off = WrongWayRule("z", ZONE, PERSON, WrongWaySettings(direction=(1.0, 0.0), relink_heights=0.0))
    assert [b.state for b in run(off, _broken_walk(gap=3, jump=0.02))].count("started") == 2
    # two people side by side, both going the wrong way: the second is not the first's continuation
    together = [([(1, x, 0.5), (2, x + 0.01, 0.5)], ()) for x in np.linspace(0.8, 0.5, 12)] + [([], (1, 2))]
    assert [b.state for b in run(rule(), together)].count("started") == 2
