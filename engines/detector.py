"""A detector = manifest + engine + letterbox + decoder + NMS: BGR images in, Detections out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine
from engines.decoders import Decoder, make_decoder
from engines.manifest import (
    ModelError,
    ModelManifest,
    check_engine_tensors,
    load_manifest,
    resolve_model_file,
    verify_sha256,
)
from engines.nms import nms
from engines.preprocess import Letterbox
from engines.registry import open_engine
from engines.types import Detections


class Detector:
    """Runs one model on BGR uint8 images of any size; a context manager that owns its engine.

    Attributes: `manifest`, `model_sha256` (hex of the file actually loaded),
    `last_timings_s` ({"preprocess", "inference", "postprocess"} seconds of the last `detect`).
    """

    def __init__(
        self,
        manifest: ModelManifest,
        engine: Engine,
        model_sha256: str,
        *,
        confidence: float = 0.3,
        nms_iou: float = 0.45,
        max_detections: int = 300,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.manifest = manifest
        self.model_sha256 = model_sha256
        self.confidence = confidence
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        if class_names is not None and not class_names:
            raise ModelError(f"model {manifest.name!r}: class_names is empty; pass None for all classes")
        self._class_ids = None if class_names is None else manifest.class_ids(class_names)
        self._engine = engine
        self._decoder: Decoder = make_decoder(manifest)
        spec = manifest.input
        self._letterbox = Letterbox(
            spec.size_wh,
            engine.max_batch,
            pad_value=spec.pad_value,
            channel_order=spec.channel_order,
            mean=spec.mean,
            std=spec.std,
        )
        self.last_timings_s: dict[str, float] = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}

    @classmethod
    def open(
        cls,
        manifest_path: Path,
        models_dir: Path,
        backend: str = "onnxruntime",
        confidence: float = 0.3,
        nms_iou: float = 0.45,
        class_names: list[str] | None = None,
        **engine_options: Any,
    ) -> Detector:
        """Load and check the manifest, verify the model file's SHA-256, open the engine and
        check its graph against the manifest. Raises ModelError on any disagreement."""
        manifest = load_manifest(manifest_path)
        model_path = resolve_model_file(manifest, models_dir)
        sha256 = verify_sha256(model_path, manifest.sha256)
        if manifest.input.graph_size_wh not in (None, manifest.input.size_wh):
            if backend != "onnxruntime":
                raise ModelError(
                    f"{manifest_path}: input.graph_size_wh: only the onnxruntime backend runs a graph at another "
                    f"input size; use a manifest of the graph's own size {manifest.input.graph_size_wh} with {backend}"
                )
            engine_options["input_size_wh"] = manifest.input.size_wh
        if backend == "tensorrt":  # TensorRT builds the manifest's precision, checked against the graph
            engine_options["precision"] = manifest.precision
        engine = open_engine(backend, model_path, **engine_options)
        try:
            check_engine_tensors(manifest, engine.inputs, engine.outputs, model_path)
            return cls(manifest, engine, sha256, confidence=confidence, nms_iou=nms_iou, class_names=class_names)
        except BaseException:
            engine.close()
            raise

    @property
    def max_batch(self) -> int:
        return self._engine.max_batch

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """images: BGR uint8 (h, w, 3) of any sizes (not modified) -> one Detections per image,
        xyxy float32 in that image's pixels, sorted by descending confidence.
        Runs in engine batches of at most `max_batch` images."""
        timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        results: list[Detections] = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start : start + self.max_batch]
            t0 = time.perf_counter()
            batch, scales = self._letterbox(chunk)
            t1 = time.perf_counter()
            outputs = self._engine.infer(batch)
            t2 = time.perf_counter()
            sizes_wh = [(image.shape[1], image.shape[0]) for image in chunk]
            candidates = self._decoder(outputs, scales, sizes_wh, self.confidence, self._class_ids)
            for found in candidates:
                keep = nms(found.xyxy, found.confidence, found.class_id, self.nms_iou, self.max_detections)
                results.append(found.select(keep))
            t3 = time.perf_counter()
            timings["preprocess"] += t1 - t0
            timings["inference"] += t2 - t1
            timings["postprocess"] += t3 - t2
        self.last_timings_s = timings
        return results

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
