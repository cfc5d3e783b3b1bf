"""Output decoders by family name: raw graph outputs -> candidate detections in source pixels.

A family is one module here exposing a class that takes a manifest and is
called as `decoder(outputs, scales, sizes_wh, confidence, class_ids)`.
Adding NanoDet/GFL means adding `nanodet.py` and one line in `_FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from engines.decoders.nanodet import NanodetDecoder
from engines.decoders.yolox import YoloxDecoder
from engines.manifest import ModelError, ModelManifest
from engines.types import Detections

_FAMILIES: dict[str, type[Decoder]] = {"yolox": YoloxDecoder, "nanodet": NanodetDecoder}


class Decoder(Protocol):
    """Turns one batch of raw outputs into per-image candidates (before NMS)."""

    def __call__(
        self,
        outputs: dict[str, np.ndarray],
        scales: np.ndarray,
        sizes_wh: Sequence[tuple[int, int]],
        confidence: float,
        class_ids: np.ndarray | None = None,
    ) -> list[Detections]: ...


def make_decoder(manifest: ModelManifest) -> Decoder:
    """The decoder of `manifest.decoder`, checked against the manifest; ModelError for an unknown family."""
    family = _FAMILIES.get(manifest.decoder)
    if family is None:
        raise ModelError(
            f"model {manifest.name!r}: unknown decoder {manifest.decoder!r}: set the manifest's decoder to one of "
            f"{sorted(_FAMILIES)} (the family the graph's outputs come from)"
        )
    return family(manifest)
