"""AP50 and MOT ground truth on small tables."""

import math

import numpy as np
import pytest

from calibration.metrics import (
    average_precision,
    iou_matrix,
    load_mot_ground_truth,
    recall_precision,
)
from engines.types import Detections


def _dets(boxes, scores=None, classes=None) -> Detections:
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    conf = np.asarray(scores if scores is not None else [1.0] * n, np.float32)
    cls = np.asarray(classes if classes is not None else [0] * n, np.int32)
    return Detections(xyxy, conf, cls)


TRUTH = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]]), _dets([[5, 5, 15, 15]])]


@pytest.mark.parametrize(
    ("predictions", "expected"),
    [
        ([_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8]), _dets([[5, 5, 15, 15]], [0.7])], 1.0),
        # a false positive ranked first: precision 1/2, 2/3, 3/4 at recalls 1/3, 2/3, 1;
        # the interpolated envelope is 3/4 everywhere
        ([_dets([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0.9, 0.8, 0.95]), _dets([[5, 5, 15, 15]], [0.7])],
         0.75),
        # one box missed entirely: recall stops at 2/3
        ([_dets([[0, 0, 10, 10]], [0.9]), _dets([[5, 5, 15, 15]], [0.7])], 2 / 3),
        # a duplicate of a matched box is a false positive, not a second hit
        ([_dets([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.85, 0.8]), _dets([[5, 5, 15, 15]], [0.7])],
         (1 + 0.75 + 0.75) / 3),
        # IoU 100/220 = 0.45 < 0.5: a false positive; the one hit comes second (precision 1/2 at recall 1/3)
        ([_dets([[0, 0, 10, 22]], [0.9]), _dets([[5, 5, 15, 15]], [0.7])], 1 / 6),
    ],
)
def test_average_precision(predictions, expected):
    assert average_precision(predictions, TRUTH, 0) == pytest.approx(expected)


def test_ap_is_nan_without_reference_boxes_and_zero_without_predictions():
    assert math.isnan(average_precision([Detections.empty()], [Detections.empty()], 0))
    assert average_precision([Detections.empty()], [_dets([[0, 0, 1, 1]])], 0) == 0.0


def test_classes_are_scored_separately():
    truth = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], classes=[0, 2])]
    preds = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], classes=[2, 0])]
    assert average_precision(preds, truth, 0) == 0.0
    assert recall_precision(preds, truth, 2) == (0.0, 0.0)


def test_iou_matrix():
    iou = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0]])


def test_mot_ground_truth(tmp_path, media_dir):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,10,20,30,40,1,-1,-1,-1\n1,2,0,0,5,5,0,-1,-1,-1\n3,1,1,2,3,4,1,-1,-1,-1\n")
    truth = load_mot_ground_truth(path)
    assert sorted(truth) == [0, 2] and all(isinstance(k, int) for k in truth)
    np.testing.assert_array_equal(truth[0].xyxy, [[10, 20, 40, 60]])  # the conf-0 row is ignored
    vtest = load_mot_ground_truth(media_dir / "vtest.gt.txt")
    # 4650 rows, 174 of them flagged conf 0 (ignored)
    assert sum(len(d) for d in vtest.values()) == 4476 and min(vtest) == 0 and max(vtest) == 794


def test_bad_ground_truth_file(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,2,3\n")
    with pytest.raises(ValueError, match="at least 7 columns"):
        load_mot_ground_truth(path)
