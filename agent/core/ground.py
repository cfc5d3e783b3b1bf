"""A camera's ground plane: four image points with their positions in metres give the homography
from the (normalised) image to the ground, so zone areas, distances and speeds can be given in
metres. Pure numpy."""

from __future__ import annotations

import numpy as np

from agent.core.geometry import polygon_area


class GroundPlane:
    """The homography H (3x3) with ground_m ~ H @ (x, y, 1) for normalised image points (x, y) on the
    ground. Raises ValueError when the four points do not define one (three in a line, in either frame)."""

    def __init__(self, image_points: np.ndarray, ground_m: np.ndarray) -> None:
        src = np.asarray(image_points, np.float64).reshape(-1, 2)
        dst = np.asarray(ground_m, np.float64).reshape(-1, 2)
        if src.shape != (4, 2) or dst.shape != (4, 2):
            raise ValueError(f"a ground plane needs 4 image points and 4 ground points, got {len(src)} and {len(dst)}")
        for name, pts in (("image_points", src), ("ground_m", dst)):
            if _has_three_in_a_line(pts):
                raise ValueError(f"{name}: three of the four points are (nearly) in a line; choose the corners of a "
                                 "large rectangle (or any quadrilateral) on the ground")  # fmt: skip
        self.h = _homography(src, dst)
        # the horizon: image points with w <= 0 lie at or above it (not on the ground)
        self._w_sign = float(np.sign(self._w(src).mean()))

    def _w(self, points: np.ndarray) -> np.ndarray:
        return points @ self.h[2, :2] + self.h[2, 2]

    def on_ground(self, points_norm: np.ndarray) -> np.ndarray:
        """bool (N,): whether each image point lies below the horizon (maps to a point of the ground)."""
        return self._w(np.asarray(points_norm, np.float64).reshape(-1, 2)) * self._w_sign > 1e-9

    def to_m(self, points_norm: np.ndarray) -> np.ndarray:
        """Normalised image points float (N, 2) -> ground positions in metres float64 (N, 2)."""
        p = np.asarray(points_norm, np.float64).reshape(-1, 2)
        q = p @ self.h[:, :2].T + self.h[:, 2]
        return q[:, :2] / q[:, 2:3]

    def area_m2(self, polygon_norm: np.ndarray) -> float:
        """Ground area of an image polygon (M, 2), in m². Raises ValueError if a vertex lies above the horizon.
        Edges map to straight lines under a homography, so the image polygon's vertices are enough."""
        if not np.all(self.on_ground(polygon_norm)):
            raise ValueError("the polygon reaches above the ground plane's horizon: its area in m² is unbounded")
        return polygon_area(self.to_m(polygon_norm))

    def distance_m(self, a_norm: np.ndarray, b_norm: np.ndarray) -> np.ndarray:
        """Ground distances (metres, float64 (N,)) between image points a[i] and b[i], each float (N, 2)."""
        return np.linalg.norm(self.to_m(a_norm) - self.to_m(b_norm), axis=1)


def required(ground: GroundPlane | None, zone_id: str, setting: str, instead: str) -> GroundPlane:
    """The camera's ground plane for a setting in metres; a clear error when the camera has none."""
    if ground is None:
        raise ValueError(f"zone {zone_id!r}: {setting} needs the camera's ground calibration (the zones "
                         f"document's `ground`); or give {instead}")  # fmt: skip
    return ground


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The exact homography of four correspondences (h33 = 1): an 8x8 linear system."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    return np.append(np.linalg.solve(a, b), 1.0).reshape(3, 3)


def _has_three_in_a_line(pts: np.ndarray) -> bool:
    """Whether any three of four points are collinear, relative to the points' spread."""
    scale = max(float(np.ptp(pts, axis=0).max()), 1e-12) ** 2
    for i in range(4):
        a, b, c = np.delete(pts, i, axis=0)
        if abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])) < 1e-3 * scale:
            return True
    return False
