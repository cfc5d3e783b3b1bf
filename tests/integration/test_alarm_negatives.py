"""Hard negatives for fire and abandoned objects: clips generated now from the real footage (a flashing
amber beacon, a steady lit orange sign, a slow lighting change then lights switched on, headlights
driving through and stopping, a Le2i person lying still for 20 s, vtest at 5 fps: people walking over
flame-coloured gravel; benchmarks/hard_negatives.py), each run
through the real pipeline (reader, yolox_nano, tracker, rules) with every alarm kind on over the whole
frame. None may raise `fire` or `abandoned_object`. The real positives (FURG house6, ABODA 4) are
checked in test_analytics_footage.py; the full set and all 62 Le2i clips by `make eval-alarms`."""

from __future__ import annotations

import pytest

from benchmarks.eval_alarms import evaluate, started
from benchmarks.hard_negatives import recipes, write

pytestmark = pytest.mark.integration

DEFAULT = [r.name for r in recipes()["default"]]


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory, media_dir):
    out = tmp_path_factory.mktemp("hard_negatives")
    for recipe in recipes()["default"]:
        write(recipe, out, media_dir)
    return out


@pytest.mark.parametrize("name", DEFAULT)
def test_no_fire_and_no_abandoned_object_on_a_hard_negative(clips_dir, models_dir, name):
    result = evaluate(clips_dir / f"{name}.avi", models_dir)
    alarms = {k: [(a["t_s"], a.get("reasons")) for a in started(result, k)] for k in ("fire", "abandoned_object")}
    print(f"{name}: {result['frames']} frames, {alarms}")
    assert result["frames"] >= 150  # the clip really ran (15 s or more)
    assert alarms == {"fire": [], "abandoned_object": []}
