"""The alarm evaluation's pieces that need no model: the clip list and the detections cache."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.eval_alarms import clips_in
from engines.types import Detections
from testbed.detections_cache import CachedDetector, cache_path


class CountingDetector:
    """Stands in for the model: one box per image, its x the number of images seen so far.

    Not the model: the cache is checked to serve each image its own stored answer, so the answers must tell
    images apart, and the clip here is a few bytes, not video; the real model through the cache runs in
    `make eval-alarms`."""

    def __init__(self) -> None:
        self.calls = 0
        self.last_timings_s = {"preprocess": 0.0, "inference": 0.001, "postprocess": 0.0}

    def detect(self, images, sizes_wh=None):
        out = []
        for _ in images:
            out.append(
                Detections(
                    np.array([[self.calls, 0, self.calls + 1, 1]], np.float32),
                    np.ones(1, np.float32),
                    np.zeros(1, np.int32),
                )
            )
            self.calls += 1
        return out


def test_cache_serves_a_complete_run_and_is_keyed_by_clip_model_and_settings(tmp_path):
    clip = tmp_path / "a.avi"
    clip.write_bytes(b"frames")
    path = cache_path(tmp_path / "cache", clip, "0" * 64, 0.3, ["person"])
    first = CachedDetector(real := CountingDetector(), path)
    got = first.detect([None, None]) + first.detect([None])
    first.save()
    again = CachedDetector(real, path)
    assert [d.xyxy.tolist() for d in again.detect([None, None, None])] == [d.xyxy.tolist() for d in got]
    assert real.calls == 3 and again.hit
    again.detect([None])  # past what is stored: the model runs
    assert real.calls == 4 and not again.hit
    clip.write_bytes(b"other frames")
    others = {cache_path(tmp_path, clip, "0" * 64, 0.3, ["person"]), cache_path(tmp_path, clip, "1" * 64, 0.3, ["person"]),
              cache_path(tmp_path, clip, "0" * 64, 0.5, ["person"]), cache_path(tmp_path, clip, "0" * 64, 0.3, None)}  # fmt: skip
    assert path not in others and len(others) == 4


def test_a_folder_without_clips_is_an_error_naming_it(tmp_path):
    (tmp_path / "notes.txt").write_text("no video here")
    with pytest.raises(SystemExit, match=str(tmp_path)):
        clips_in([tmp_path])
