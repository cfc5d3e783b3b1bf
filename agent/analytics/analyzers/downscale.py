"""One downscale per frame per camera, shared by every frame-level analyzer."""

from __future__ import annotations

import cv2
import numpy as np


def downscale(image_bgr: np.ndarray, width_px: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (h, width_px, 3) keeping the aspect ratio; area interpolation
    averages pixels, so the small frame is also a cheap denoiser. Never upscales."""
    h, w = image_bgr.shape[:2]
    if w <= width_px:
        return image_bgr
    size = (width_px, max(1, round(h * width_px / w)))
    return cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)


def polygon_mask(polygon: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """bool (h, w): pixels inside a normalised polygon float (M, 2) on a frame of `size_hw`."""
    h, w = size_hw
    mask = np.zeros((h, w), np.uint8)
    pts = np.round(polygon * np.array([w, h], np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)
