"""NanoDet (GFL head) decoding: per-stride sigmoid class scores and distance distributions.

For each stride s the graph gives `cls_pred_stride_{s}` (B, N_s, C), scores
already sigmoid, and `dis_pred_stride_{s}` (B, N_s, 4 * (reg_max + 1)), logits
of a discrete distribution over 0..reg_max for each side (left, top, right,
bottom). A side's distance is the distribution's expectation times s, measured
from the cell's centre prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from engines.manifest import ModelError, ModelManifest
from engines.types import Detections

# Centre priors sit in the middle of each cell ((x + 0.5) * s), as in NanoDet's
# GFL head; measured on vtest.avi: offset 0 shifts every box by s/2 and costs
# person AP50 (see tests/engines/test_nanodet.py).
CENTRE_OFFSET = 0.5


@cache
def centre_priors(size_wh: tuple[int, int], stride: int) -> np.ndarray:
    """float32 (N_s, 2) cell centres (x, y) in input pixels, row-major (x fastest); read-only."""
    width, height = size_wh
    ys, xs = np.mgrid[0 : height // stride, 0 : width // stride]
    centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + CENTRE_OFFSET) * stride
    centres = centres.astype(np.float32)
    centres.flags.writeable = False
    return centres


def expected_distances(logits: np.ndarray, reg_max: int) -> np.ndarray:
    """float32 (N, 4 * (reg_max + 1)) bin logits -> float32 (N, 4) expected bins (0..reg_max)."""
    bins = logits.reshape(len(logits), 4, reg_max + 1).astype(np.float32)
    bins = np.exp(bins - bins.max(axis=2, keepdims=True))
    bins /= bins.sum(axis=2, keepdims=True)
    return bins @ np.arange(reg_max + 1, dtype=np.float32)


class NanodetDecoder:
    """Decodes NanoDet's six outputs (cls and dis per stride) into per-image candidates."""

    def __init__(self, manifest: ModelManifest) -> None:
        classes = len(manifest.classes)
        width, height = manifest.input.size_wh
        self.levels: list[tuple[str, str, int]] = []
        self.reg_max = -1
        for stride in manifest.strides:
            cls_name, dis_name = f"cls_pred_stride_{stride}", f"dis_pred_stride_{stride}"
            cells = (width // stride) * (height // stride)
            cls_shape, dis_shape = manifest.outputs.get(cls_name), manifest.outputs.get(dis_name)
            if cls_shape is None or dis_shape is None:
                raise ModelError(f"model {manifest.name!r}: nanodet decoder needs outputs {cls_name!r} and {dis_name!r}")
            bins_per_side, rest = divmod(dis_shape[-1], 4)
            if tuple(cls_shape) != (cells, classes) or len(dis_shape) != 2 or dis_shape[0] != cells or rest:
                raise ModelError(
                    f"model {manifest.name!r}: stride {stride} outputs {tuple(cls_shape)}, {tuple(dis_shape)} "
                    f"do not match ({cells}, {classes}) and ({cells}, 4 * bins)"
                )
            if self.reg_max not in (-1, bins_per_side - 1):
                raise ModelError(f"model {manifest.name!r}: strides disagree on the number of distance bins")
            self.reg_max = bins_per_side - 1
            self.levels.append((cls_name, dis_name, stride))
        self.size_wh = (width, height)

    def __call__(
        self,
        outputs: dict[str, np.ndarray],
        scales: np.ndarray,
        sizes_wh: Sequence[tuple[int, int]],
        confidence: float,
        class_ids: np.ndarray | None = None,
    ) -> list[Detections]:
        """outputs: float32 cls (B, N_s, C) and dis (B, N_s, 4 * (reg_max + 1)) per stride;
        scales: float32 (B,) input px per source px; sizes_wh: B source (width, height);
        class_ids: int (K,) classes to keep, None for all.

        Returns B candidate sets (best class per cell, score >= confidence), xyxy in
        source pixels clipped to the image; not yet NMS-ed.
        """
        found = []
        for i in range(len(scales)):
            parts = [self._decode_level(outputs, i, level, confidence, class_ids) for level in self.levels]
            xyxy = np.concatenate([p[0] for p in parts]) / scales[i]
            width, height = sizes_wh[i]
            np.clip(xyxy, 0, [width, height, width, height], out=xyxy)
            scores = np.concatenate([p[1] for p in parts])
            labels = np.concatenate([p[2] for p in parts])
            found.append(Detections(xyxy.astype(np.float32), scores.astype(np.float32), labels.astype(np.int32)))
        return found

    def _decode_level(
        self,
        outputs: dict[str, np.ndarray],
        image: int,
        level: tuple[str, str, int],
        confidence: float,
        class_ids: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cls_name, dis_name, stride = level
        scores_nc = outputs[cls_name][image]
        if class_ids is not None:
            scores_nc = scores_nc[:, class_ids]
        best = scores_nc.argmax(axis=1)
        scores = scores_nc[np.arange(len(best)), best]
        # The softmax over bins is the expensive part: only cells that can pass pay it.
        cells = np.flatnonzero(scores >= confidence)
        distances = expected_distances(outputs[dis_name][image][cells], self.reg_max) * stride
        centres = centre_priors(self.size_wh, stride)[cells]
        xyxy = np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1)
        labels = best[cells] if class_ids is None else class_ids[best[cells]]
        return xyxy, scores[cells], labels
