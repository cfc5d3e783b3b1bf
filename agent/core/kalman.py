"""Batched constant-velocity Kalman filter on boxes, as in ByteTrack, over all tracks at once.

State per track: (cx, cy, a, h, vcx, vcy, va, vh) with cx, cy, h in pixels,
a = w / h, and velocities per second, so the motion model holds across
dropped frames and any frame rate. Means are float64 (N, 8), covariances
float64 (N, 8, 8). Functions are pure: they return new arrays.
"""

from __future__ import annotations

import numpy as np

# ByteTrack's noise weights are per frame of MOT17's 30 fps footage. Here
# velocities are per second and the process noise grows linearly with dt (a
# random walk), so a per-frame std s becomes a variance s² · dt / _REF_DT_S,
# and a per-frame velocity std s becomes s / _REF_DT_S per second.
_REF_DT_S = 1.0 / 30.0
_POS_WEIGHT = 1.0 / 20.0  # std of cx, cy, h as a fraction of h, per frame
_VEL_WEIGHT = 1.0 / 160.0  # std of their velocities as a fraction of h, per frame
_ASPECT_STD = 1e-2  # absolute std of a, per frame
_ASPECT_VEL_STD = 1e-5  # absolute std of da, per frame
_MEASURE_ASPECT_STD = 1e-1
_MIN_H_PX = 1.0  # noise scales with h: a degenerate box must not give a singular covariance


def xyxy_to_xyah(xyxy: np.ndarray) -> np.ndarray:
    """Boxes float (N, 4) x1, y1, x2, y2 -> float64 (N, 4) cx, cy, w / h, h."""
    xyxy = np.asarray(xyxy, dtype=np.float64)
    w = xyxy[:, 2] - xyxy[:, 0]
    h = np.maximum(xyxy[:, 3] - xyxy[:, 1], _MIN_H_PX)
    return np.stack(
        [(xyxy[:, 0] + xyxy[:, 2]) * 0.5, (xyxy[:, 1] + xyxy[:, 3]) * 0.5, w / h, h], axis=1
    )


def mean_to_xyxy(mean: np.ndarray) -> np.ndarray:
    """State means float64 (N, 8) -> boxes float64 (N, 4) x1, y1, x2, y2 in pixels."""
    cx, cy, a, h = mean[:, 0], mean[:, 1], mean[:, 2], mean[:, 3]
    half_w, half_h = a * h * 0.5, h * 0.5
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


def _diag(std: np.ndarray) -> np.ndarray:
    """Stds float64 (N, K) -> diagonal covariances float64 (N, K, K)."""
    out = np.zeros(std.shape + (std.shape[1],))
    idx = np.arange(std.shape[1])
    out[:, idx, idx] = std**2
    return out


def initiate(xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from measurements float64 (N, 4): mean (N, 8) at rest, covariance (N, 8, 8)."""
    n = len(xyah)
    mean = np.concatenate([xyah, np.zeros((n, 4))], axis=1)
    h = np.maximum(xyah[:, 3], _MIN_H_PX)
    pos = 2.0 * _POS_WEIGHT * h
    vel = 10.0 * _VEL_WEIGHT * h / _REF_DT_S
    aspect, aspect_vel = np.full(n, _ASPECT_STD), np.full(n, _ASPECT_VEL_STD / _REF_DT_S)
    std = np.stack([pos, pos, aspect, pos, vel, vel, aspect_vel, vel], axis=1)
    return mean, _diag(std)


def predict(mean: np.ndarray, cov: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Advance every track by dt_s seconds (the same for all: they share the camera's clock)."""
    transition = np.eye(8)
    transition[np.arange(4), np.arange(4) + 4] = dt_s
    h = np.maximum(mean[:, 3], _MIN_H_PX)
    n = len(mean)
    pos = _POS_WEIGHT * h
    vel = _VEL_WEIGHT * h / _REF_DT_S
    aspect, aspect_vel = np.full(n, _ASPECT_STD), np.full(n, _ASPECT_VEL_STD / _REF_DT_S)
    std = np.stack([pos, pos, aspect, pos, vel, vel, aspect_vel, vel], axis=1)
    noise = _diag(std) * (dt_s / _REF_DT_S)
    new_mean = predict_mean(mean, dt_s)
    new_cov = transition @ cov @ transition.T + noise
    return new_mean, new_cov


def predict_mean(mean: np.ndarray, dt_s: float) -> np.ndarray:
    """The means float64 (N, 8) advanced by dt_s seconds at constant velocity (no covariance)."""
    new_mean = mean.copy()
    new_mean[:, :4] += dt_s * mean[:, 4:]
    return new_mean


def update(
    mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Correct tracks (N, 8), (N, 8, 8) with their matched measurements float64 (N, 4)."""
    h = np.maximum(mean[:, 3], _MIN_H_PX)
    pos = _POS_WEIGHT * h
    measure_noise = _diag(np.stack([pos, pos, np.full(len(mean), _MEASURE_ASPECT_STD), pos], axis=1))
    # The measurement picks the first four state components, so H P Hᵀ and P Hᵀ are slices.
    innovation_cov = cov[:, :4, :4] + measure_noise
    cross_cov = cov[:, :, :4]
    # K = P Hᵀ S⁻¹, solved as Sᵀ Kᵀ = (P Hᵀ)ᵀ since S is symmetric.
    gain = np.linalg.solve(innovation_cov, cross_cov.transpose(0, 2, 1)).transpose(0, 2, 1)
    innovation = xyah - mean[:, :4]
    new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
    new_cov = cov - gain @ innovation_cov @ gain.transpose(0, 2, 1)
    return new_mean, new_cov
