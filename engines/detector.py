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


def at_size(manifest: ModelManifest, size_wh: tuple[int, int]) -> ModelManifest:
    """`manifest`'s graph run at input `size_wh` (its outputs' shapes follow, taken from the graph at open)."""
    graph_wh = manifest.input.graph_size_wh or manifest.input.size_wh
    return manifest.model_copy(
        update={
            "name": f"{manifest.name}@{size_wh[0]}x{size_wh[1]}",
            "input": manifest.input.model_copy(update={"size_wh": tuple(size_wh), "graph_size_wh": graph_wh}),
        }
    )


def _engine_options(manifest: ModelManifest, backend: str, engine_options: dict[str, Any]) -> dict[str, Any]:
    """The engine options that run `manifest`'s graph on `backend`; ModelError for a size it cannot run."""
    engine_options = dict(engine_options)
    if manifest.input.graph_size_wh not in (None, manifest.input.size_wh):
        if backend != "onnxruntime":
            raise ModelError(
                f"{manifest.name}: input size {manifest.input.size_wh}: only the onnxruntime backend runs a graph "
                f"at another input size than its own {manifest.input.graph_size_wh}; use a manifest of the "
                f"graph's own size with {backend}"
            )
        engine_options["input_size_wh"] = manifest.input.size_wh
    if backend == "tensorrt":  # TensorRT builds the manifest's precision, checked against the graph
        engine_options["precision"] = manifest.precision
    return engine_options


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
        self._sized: dict[tuple[int, int], Detector] = {}  # the same graph at other input sizes (`open`)

    @classmethod
    def open(
        cls,
        manifest_path: Path,
        models_dir: Path,
        backend: str = "onnxruntime",
        confidence: float = 0.3,
        nms_iou: float = 0.45,
        class_names: list[str] | None = None,
        sizes_wh: Sequence[tuple[int, int]] = (),
        **engine_options: Any,
    ) -> Detector:
        """Load and check the manifest, verify the model file's SHA-256, open the engine and
        check its graph against the manifest. Raises ModelError on any disagreement.
        `sizes_wh`: other input sizes the same graph also runs at, one engine each (onnxruntime only),
        for the cameras that ask for one (`detect(images, sizes_wh)`)."""
        manifest = load_manifest(manifest_path)
        model_path = resolve_model_file(manifest, models_dir)
        sha256 = verify_sha256(model_path, manifest.sha256)
        options = dict(confidence=confidence, nms_iou=nms_iou, class_names=class_names)
        sized = [at_size(manifest, wh) for wh in dict.fromkeys(tuple(s) for s in sizes_wh) if wh != manifest.input.size_wh]
        # every engine's options first: a size the backend cannot run is refused before anything opens
        plans = [(m, _engine_options(m, backend, engine_options)) for m in [manifest, *sized]]
        (first, first_options), *others = plans
        detector = cls._open_at(first, model_path, sha256, backend, options, first_options)
        try:
            for m, m_options in others:
                try:
                    detector._sized[m.input.size_wh] = cls._open_at(m, model_path, sha256, backend, options, m_options, resized=True)
                except ModelError:
                    raise
                except Exception as e:  # the runtime's own words: a graph whose shapes are fixed inside
                    raise ModelError(
                        f"model {manifest.name!r} cannot run at input size {m.input.size_wh}: its graph's shapes do "
                        f"not follow its input ({str(e).splitlines()[0][:200]}); remove that camera's "
                        "detect.input_size_wh or give it a model whose graph does (YOLOX's)"
                    ) from e
        except BaseException:
            detector.close()
            raise
        return detector

    @classmethod
    def _open_at(
        cls,
        manifest: ModelManifest,
        model_path: Path,
        sha256: str,
        backend: str,
        options: dict,
        engine_options: dict,
        resized: bool = False,
    ) -> Detector:
        """The detector of `manifest` (its file already verified) on its own engine; `resized` (`at_size`):
        the outputs' shapes are the graph's at that size."""
        engine = open_engine(backend, model_path, **engine_options)
        try:
            if resized:
                manifest = manifest.model_copy(update={"outputs": {t.name: t.shape[1:] for t in engine.outputs}})
            check_engine_tensors(manifest, engine.inputs, engine.outputs, model_path)
            return cls(manifest, engine, sha256, **options)
        except BaseException:
            engine.close()
            raise

    @property
    def max_batch(self) -> int:
        return self._engine.max_batch

    def detect(
        self, images: Sequence[np.ndarray], sizes_wh: Sequence[tuple[int, int] | None] | None = None
    ) -> list[Detections]:
        """images: BGR uint8 (h, w, 3) of any sizes (not modified) -> one Detections per image,
        xyxy float32 in that image's pixels, sorted by descending confidence.
        sizes_wh: per image, the input size to run it at (one of `open`'s sizes_wh), None for the manifest's.
        Runs in engine batches of at most `max_batch` images."""
        if sizes_wh is None or all(s in (None, self.manifest.input.size_wh) for s in sizes_wh):
            return self._detect(images)
        results: list[Detections | None] = [None] * len(images)
        timings = dict.fromkeys(self.last_timings_s, 0.0)
        for size_wh in dict.fromkeys(sizes_wh):
            at = [i for i, s in enumerate(sizes_wh) if s == size_wh]
            detector = self if size_wh in (None, self.manifest.input.size_wh) else self._sized.get(tuple(size_wh))
            if detector is None:
                raise ModelError(f"model {self.manifest.name!r} was not opened at input size {tuple(size_wh)}")
            for i, found in zip(at, detector._detect([images[i] for i in at])):
                results[i] = found
            for stage, seconds in detector.last_timings_s.items():
                timings[stage] += seconds
        self.last_timings_s = timings
        return results  # type: ignore[return-value]

    def _detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """`detect` at the manifest's input size."""
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
        for detector in self._sized.values():
            detector.close()
        self._engine.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
