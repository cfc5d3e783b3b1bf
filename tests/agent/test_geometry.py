import numpy as np
import pytest

from agent.core.geometry import (
    points_in_polygon,
    polygon_area,
    polygon_is_simple,
    segments_cross,
    side_of_line,
)

SQUARE = np.array([[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]])
CONCAVE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 0.4], [0.0, 1.0]])  # a notch from the top


@pytest.mark.parametrize(
    "polygon, point, inside",
    [
        (SQUARE, (0.5, 0.5), True),
        (SQUARE, (0.1, 0.5), False),
        (SQUARE, (0.5, 0.9), False),
        (SQUARE, (0.79, 0.21), True),
        (CONCAVE, (0.5, 0.8), False),  # inside the notch
        (CONCAVE, (0.5, 0.2), True),
        (CONCAVE, (0.9, 0.8), True),
    ],
)
def test_points_in_polygon(polygon, point, inside):
    assert points_in_polygon(np.array([point]), polygon).tolist() == [inside]


def test_points_in_polygon_vectorised_and_empty():
    pts = np.array([[0.5, 0.5], [0.0, 0.0], [0.3, 0.7]])
    assert points_in_polygon(pts, SQUARE).tolist() == [True, False, True]
    assert points_in_polygon(np.zeros((0, 2)), SQUARE).shape == (0,)


def test_side_of_line_is_positive_on_the_right_on_screen():
    # a->b points right; with y growing downwards, a point below is on the right-hand side
    a, b = np.array([0.0, 0.5]), np.array([1.0, 0.5])
    assert side_of_line(np.array([[0.5, 0.6], [0.5, 0.4]]), a, b).tolist() == pytest.approx([0.1, -0.1])


@pytest.mark.parametrize(
    "p0, p1, crosses",
    [
        ((0.4, 0.5), (0.6, 0.5), True),
        ((0.6, 0.5), (0.4, 0.5), True),
        ((0.4, 0.1), (0.6, 0.1), False),  # beyond the end of the segment
        ((0.4, 0.5), (0.45, 0.5), False),  # stays on one side
        ((0.5, 0.5), (0.6, 0.5), False),  # starts on the line: touching is not crossing
    ],
)
def test_segments_cross(p0, p1, crosses):
    a, b = np.array([0.5, 0.2]), np.array([0.5, 0.8])
    assert segments_cross(np.array([p0]), np.array([p1]), a, b).tolist() == [crosses]


@pytest.mark.parametrize(
    "polygon, simple",
    [
        (SQUARE, True),
        (CONCAVE, True),
        (np.array([[0, 0], [1, 1], [1, 0], [0, 1]], float), False),  # bow tie
        (np.array([[0, 0], [1, 0], [1, 0], [0, 1]], float), False),  # repeated vertex
        (np.array([[0, 0], [1, 0], [0.5, 0], [0.5, 1]], float), False),  # edge folds back on itself
    ],
)
def test_polygon_is_simple(polygon, simple):
    assert polygon_is_simple(polygon) is simple


def test_polygon_area():
    assert polygon_area(SQUARE) == pytest.approx(0.36)
