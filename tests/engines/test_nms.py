import numpy as np
import pytest

from engines.nms import nms


def _run(boxes, scores, classes, iou=0.5, max_detections=100):
    return nms(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(classes, np.int32),
        iou,
        max_detections,
    ).tolist()


@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "iou", "max_detections", "kept"),
    [
        # empty input
        ([], [], [], 0.5, 10, []),
        # overlapping same class: the lower score goes (IoU 81/119 = 0.68)
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.6, 0.9], [0, 0], 0.5, 10, [1]),
        # same boxes, different classes: both stay
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.6, 0.9], [0, 1], 0.5, 10, [1, 0]),
        # IoU below the threshold: both stay, sorted by score
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.9, 0.6], [0, 0], 0.7, 10, [0, 1]),
        # disjoint boxes: all stay, by descending score
        ([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], [0.2, 0.9, 0.5], [3, 3, 3], 0.1, 10, [1, 2, 0]),
        # chain: 0 suppresses 1, and 2 (far from 0) survives even though it overlaps 1
        ([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], [0.9, 0.8, 0.7], [0, 0, 0], 0.3, 10, [0, 2]),
        # max_detections caps the output
        ([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], [0.2, 0.9, 0.5], [0, 0, 0], 0.5, 2, [1, 2]),
        # degenerate zero-area boxes never divide by zero
        ([[1, 1, 1, 1], [1, 1, 1, 1]], [0.5, 0.4], [0, 0], 0.5, 10, [0, 1]),
    ],
)
def test_nms_table(boxes, scores, classes, iou, max_detections, kept):
    assert _run(boxes, scores, classes, iou, max_detections) == kept


def test_nms_class_offset_does_not_merge_far_classes():
    """Boxes of class 1 shifted by the class offset must not land on boxes of class 2."""
    boxes = [[0, 0, 100, 100], [0, 0, 100, 100], [0, 0, 100, 100]]
    assert _run(boxes, [0.9, 0.8, 0.7], [0, 1, 2]) == [0, 1, 2]


def test_nms_does_not_mutate_inputs():
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    scores = np.array([0.6, 0.9], np.float32)
    classes = np.array([0, 0], np.int32)
    before = (xyxy.copy(), scores.copy(), classes.copy())
    nms(xyxy, scores, classes, 0.5, 10)
    for after, original in zip((xyxy, scores, classes), before):
        np.testing.assert_array_equal(after, original)
