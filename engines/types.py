"""Array types that cross the engine boundary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Detections:
    """Detections of one image, rows aligned.

    xyxy: float32 (N, 4), pixels of the source image (x1, y1, x2, y2).
    confidence: float32 (N,), 0..1.
    class_id: int32 (N,), index into the model's class names.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.confidence)
        if self.xyxy.shape != (n, 4) or self.class_id.shape != (n,):
            raise ValueError(
                f"Detections rows misaligned: xyxy {self.xyxy.shape}, "
                f"confidence {self.confidence.shape}, class_id {self.class_id.shape}"
            )

    def __len__(self) -> int:
        return len(self.confidence)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32)
        )

    def select(self, index: np.ndarray) -> Detections:
        """Rows picked by a boolean mask or an index array (copies; never a view of the caller's data)."""
        return Detections(self.xyxy[index].copy(), self.confidence[index].copy(), self.class_id[index].copy())
