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

