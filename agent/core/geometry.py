"""Pure 2-D geometry on normalised (0..1) coordinates, vectorised over points."""

from __future__ import annotations

import numpy as np


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd ray casting.

    points: float (N, 2); polygon: float (M, 2), vertices in order, not repeated.
    Returns bool (N,). Points exactly on an edge may fall either side.
    """
    x = points[:, 0:1]
    y = points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.concatenate((polygon[1:], polygon[:1])).T  # each edge's far end (10x cheaper than np.roll)
    straddles = (y0 > y) != (y1 > y)
    # x of the edge at height y; the guarded denominator only matters where it does not straddle
    dy = np.where(y1 == y0, 1.0, y1 - y0)
    x_cross = x0 + (y - y0) * (x1 - x0) / dy
    return np.count_nonzero(straddles & (x < x_cross), axis=1) % 2 == 1


def feet(xyxy: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Bottom-centre points float32 (N, 2) of pixel boxes float (N, 4), normalised to the frame `size_wh`: where a
    subject stands. A box the frame's bottom cuts (a person near the camera) stands on the centre of the frame's
    last pixel row, not on its edge, so that it lies in a zone drawn to that edge."""
    w, h = size_wh
    bottom = np.minimum(xyxy[:, 3], h - 0.5)
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) * 0.5 / w, bottom / h], axis=1).astype(np.float32)


def polygon_mask(polygon: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """bool (h, w): pixels whose centre lies inside a normalised polygon float (M, 2), on a frame of `size_hw`."""
    h, w = size_hw
    ys, xs = np.mgrid[0:h, 0:w]
    centres = np.stack([(xs.ravel() + 0.5) / w, (ys.ravel() + 0.5) / h], axis=1)
    return points_in_polygon(centres, np.asarray(polygon, np.float64)).reshape(h, w)


def side_of_line(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed cross product (b - a) x (p - a), float (N,): > 0 left of a->b, < 0 right
    (in image coordinates, where y grows downwards, "left" is counter-clockwise on screen)."""
    return (b[..., 0] - a[..., 0]) * (points[:, 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (points[:, 0] - a[..., 0])


def segments_cross(p0: np.ndarray, p1: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each segment p0[i]->p1[i] properly crosses segment a->b.

    p0, p1: float (N, 2); a, b: float (2,). Returns bool (N,). Touching an
    endpoint without passing through counts as no crossing.
    """
    s0, s1, t0, t1 = _orientations(p0, p1, a, b)
    return (s0 * s1 < 0) & (t0 * t1 < 0)


def _orientations(p0, p1, a, b):
    """Sides of p0, p1 relative to a->b and of a, b relative to each p0->p1 (a, b: (2,), or (N, 2) pairwise)."""
    d = p1 - p0
    t0 = d[:, 0] * (a[..., 1] - p0[:, 1]) - d[:, 1] * (a[..., 0] - p0[:, 0])
    t1 = d[:, 0] * (b[..., 1] - p0[:, 1]) - d[:, 1] * (b[..., 0] - p0[:, 0])
    return side_of_line(p0, a, b), side_of_line(p1, a, b), t0, t1


def polygon_area(polygon: np.ndarray) -> float:
    """Unsigned shoelace area of a polygon (M, 2)."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def polygon_is_simple(polygon: np.ndarray) -> bool:
    """True when no two non-adjacent edges of the closed polygon (M, 2) intersect
    and no edge has zero length. Every pair of edges at once: M (M - 3) / 2 pairs, so
    documents cap M (zones.MAX_POLYGON_POINTS)."""
    m = len(polygon)
    starts = polygon
    ends = np.roll(polygon, -1, axis=0)
    if np.any(np.all(starts == ends, axis=1)):
        return False
    i, j = np.triu_indices(m, k=2)  # edges i < j that are not neighbours ...
    keep = ~((i == 0) & (j == m - 1))  # ... nor the first and the last, which meet too
    i, j = i[keep], j[keep]
    return not np.any(_segments_touch(starts[j], ends[j], starts[i], ends[i]))


def _segments_touch(p0: np.ndarray, p1: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Like `segments_cross` but also true for touching and collinear overlap."""
    s0, s1, t0, t1 = _orientations(p0, p1, a, b)
    crossing = (s0 * s1 <= 0) & (t0 * t1 <= 0)
    collinear = (s0 == 0) & (s1 == 0)
    # collinear segments only touch when their projections overlap
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    overlap = np.all((np.maximum(p0, p1) >= lo) & (np.minimum(p0, p1) <= hi), axis=1)
    return np.where(collinear, overlap, crossing)
