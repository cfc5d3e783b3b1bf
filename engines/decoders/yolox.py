"""YOLOX decoding: anchor-free rows (x, y, w, h, objectness, C class scores) on stride grids."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from engines.manifest import ModelError, ModelManifest
from engines.types import Detections


@cache
def yolox_grids(size_wh: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell origins float32 (N, 2) and strides float32 (N, 1) for an input size, in output row order.

    Rows go stride by stride, then row-major over each (H/s, W/s) map (x fastest),
    as YOLOX's head flattens them. Cached per input size; arrays are read-only.
    """
    width, height = size_wh
    cells, cell_strides = [], []
    for stride in strides:
        ys, xs = np.mgrid[0 : height // stride, 0 : width // stride]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        cell_strides.append(np.full((xs.size, 1), stride))
    grid_xy = np.concatenate(cells).astype(np.float32)
    stride_n1 = np.concatenate(cell_strides).astype(np.float32)
    grid_xy.flags.writeable = False
    stride_n1.flags.writeable = False
    return grid_xy, stride_n1


class YoloxDecoder:
    """Decodes the single YOLOX output float32 (B, N, 5 + C), objectness and class scores already sigmoid."""

    def __init__(self, manifest: ModelManifest) -> None:
        if len(manifest.outputs) != 1:
            raise ModelError(f"model {manifest.name!r}: yolox decoder expects one output, manifest has {manifest.outputs}")
        self.output_name, shape = next(iter(manifest.outputs.items()))
        self.grid_xy, self.stride = yolox_grids(manifest.input.size_wh, manifest.strides)
        expected = (len(self.grid_xy), 5 + len(manifest.classes))
        if tuple(shape) != expected:
            raise ModelError(
                f"model {manifest.name!r}: output {self.output_name!r} shape {tuple(shape)} != {expected} "
                f"implied by size_wh {manifest.input.size_wh}, strides {manifest.strides} and "
                f"{len(manifest.classes)} classes"
            )

    def __call__(
        self,
        outputs: dict[str, np.ndarray],
        scales: np.ndarray,
        sizes_wh: Sequence[tuple[int, int]],
        confidence: float,
        class_ids: np.ndarray | None = None,
    ) -> list[Detections]:
        """outputs[name]: float32 (B, N, 5 + C); scales: float32 (B,) input px per source px;
        sizes_wh: B source (width, height); class_ids: int (K,) classes to keep, None for all.

        Returns B candidate sets (best class per row, score = objectness * class
        score >= confidence), xyxy in source pixels clipped to the image; not yet NMS-ed.
        """
        raw = outputs[self.output_name]
        return [
            self._decode_one(raw[i], float(scales[i]), sizes_wh[i], confidence, class_ids) for i in range(len(raw))
        ]

    def _decode_one(
        self,
        rows: np.ndarray,
        scale: float,
        size_wh: tuple[int, int],
        confidence: float,
        class_ids: np.ndarray | None,
    ) -> Detections:
        # score = obj * cls <= obj, so rows with low objectness can never pass: drop them before the (N, C) product.
        candidate = np.flatnonzero(rows[:, 4] >= confidence)
        rows = rows[candidate]
        class_scores = rows[:, 5:] if class_ids is None else rows[:, 5 + class_ids]
        best = class_scores.argmax(axis=1)
        scores = rows[:, 4] * class_scores[np.arange(len(rows)), best]
        keep = scores >= confidence
        rows, best, scores, cells = rows[keep], best[keep], scores[keep], candidate[keep]
        stride = self.stride[cells]
        centre_xy = (rows[:, 0:2] + self.grid_xy[cells]) * stride
        half_wh = np.exp(rows[:, 2:4]) * stride * 0.5
        xyxy = np.concatenate([centre_xy - half_wh, centre_xy + half_wh], axis=1) / scale
        width, height = size_wh
        np.clip(xyxy, 0, [width, height, width, height], out=xyxy)
        labels = best if class_ids is None else class_ids[best]
        return Detections(xyxy.astype(np.float32), scores.astype(np.float32), labels.astype(np.int32))
