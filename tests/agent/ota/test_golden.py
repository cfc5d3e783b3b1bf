"""The golden reference a model update carries: the model's own detections on the devices' golden frames."""

from __future__ import annotations

import numpy as np
import pytest

from agent.ota.golden import reference_of
from engines.types import Detections


def test_the_reference_is_the_detections_clipped_to_the_frame_and_rounded():
    found = Detections(
        np.array([[-3.0, 5, 40.123, 90], [10, 10, 10, 20], [1, 2, 3, 4]], np.float32),
        np.array([0.91234, 0.8, 0.4], np.float32),
        np.array([0, 2, 0], np.int32),
    )
    reference = reference_of([found, Detections.empty()], ["a.png", "b.png"])
    assert [f.frame for f in reference.frames] == ["a.png", "b.png"]
    # clipped to the frame, the degenerate box dropped; the OTA defaults (IoU 0.5, score within 0.1)
    assert reference.frames[0].boxes == [(0.0, 5.0, 40.12, 90.0, 0, 0.9123), (1.0, 2.0, 3.0, 4.0, 0, pytest.approx(0.4))]
    assert reference.frames[1].boxes == [] and (reference.iou_min, reference.score_abs_tol) == (0.5, 0.1)


def test_a_frame_without_its_detections_is_refused():
    with pytest.raises(ValueError):
        reference_of([Detections.empty()], ["a.png", "b.png"])
