"""Every available backend x model x precision honours the engine contract and detects like FP32.

Cases: ONNX Runtime FP32 for the three shipped models, ONNX Runtime INT8 (the QDQ
models of the session's one calibration: the one tuned for ONNX Runtime and the TensorRT
export), and TensorRT FP32/INT8 (the TensorRT export) where tensorrt imports.

Tolerance: on 10 real vtest.avi frames, the case's persons (score >= 0.3) against the FP32
reference of the same model at IoU 0.5: recall >= MIN_RECALL and precision >= MIN_PRECISION.
INT8 measured here (u8s8, 7-bit weights, AVX2): recall 0.80-0.82, precision 0.97-0.99.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from calibration.frames import read_frames, spread_indices
from calibration.metrics import recall_precision
from engines.detector import Detector
from engines.manifest import check_engine_tensors
from tests.calibration.shared_run import calibrated_yolox

pytestmark = pytest.mark.integration

MIN_RECALL, MIN_PRECISION = 0.7, 0.9
PERSON = 0
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_TRT = pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed here (needs an NVIDIA GPU)")

CASES = [
    pytest.param(("onnxruntime", "yolox_nano", "fp32"), id="ort-yolox_nano-fp32"),
    pytest.param(("onnxruntime", "light_person_detector", "fp32"), id="ort-light_person_detector-fp32"),
    pytest.param(("onnxruntime", "nanodet_m_416", "fp32"), id="ort-nanodet_m_416-fp32"),
    pytest.param(("onnxruntime", "yolox_nano", "int8"), id="ort-yolox_nano-int8"),
    pytest.param(("onnxruntime", "yolox_nano", "int8_trt"), id="ort-yolox_nano-int8_trt"),
    pytest.param(("tensorrt", "yolox_nano", "fp32"), id="trt-yolox_nano-fp32", marks=NO_TRT),
    pytest.param(("tensorrt", "yolox_nano", "int8_trt"), id="trt-yolox_nano-int8_trt", marks=NO_TRT),
]


@pytest.fixture(scope="module")
def frames(media_dir):
    """10 BGR uint8 (576, 768, 3) frames spread over vtest.avi."""
    return [f.image for f in read_frames(str(media_dir / "vtest.avi"), spread_indices(795, 10))]


@pytest.fixture(scope="module")
def references(manifests_dir, models_dir, frames):
    """FP32 ONNX Runtime detections per model name, image by image on one session (computed on first use):
    the reference each case runs against in its own way, batched and split between sessions (ONNX Runtime
    FP32, so those cases check batching and the split), or on another backend or precision."""
    cache: dict[str, list] = {}

    def get(model: str):
        if model not in cache:
            with Detector.open(manifests_dir / f"{model}.json", models_dir, max_batch=1, sessions=1) as detector:
                cache[model] = detector.detect(frames)
        return cache[model]

    return get


@pytest.fixture(params=CASES)
def case(request, manifests_dir, models_dir, tmp_path_factory, repo_dir, media_dir):
    backend, model, precision = request.param
    manifest_path, folder, options = manifests_dir / f"{model}.json", models_dir, {}
    if precision.startswith("int8"):
        folder, _ = calibrated_yolox(tmp_path_factory, repo_dir, models_dir, media_dir)
        manifest_path = folder / f"{model}_{precision}.json"
    if backend == "tensorrt":  # the precision is the manifest's
        options = {"max_batch": 4, "cache_dir": tmp_path_factory.mktemp("trt")}
    with Detector.open(manifest_path, folder, backend=backend, **options) as detector:
        yield model, precision, detector


def test_specs_dtypes_and_batch_shapes(case):
    model, _, detector = case
    engine = detector._engine  # the contract is the engine's; the Detector only opened and checked it
    manifest = detector.manifest
    check_engine_tensors(manifest, engine.inputs, engine.outputs, manifest.file)
    assert all(s.dtype == np.float32 for s in (*engine.inputs, *engine.outputs))
    width, height = manifest.input.size_wh
    rng = np.random.default_rng(0)
    for batch in sorted({1, min(2, engine.max_batch)}):
        out = engine.infer((rng.random((batch, 3, height, width)) * 255).astype(np.float32))
        assert set(out) == set(manifest.outputs)
        for name, shape in manifest.outputs.items():
            assert out[name].shape == (batch, *shape) and out[name].dtype == np.float32
    # Graphs that hard-code batch 1 in a Reshape (NanoDet, the light person model) run a batch image by
    # image; the production model must batch across cameras in one call.
    if model == "yolox_nano":
        assert engine.max_batch >= 2


def test_detections_match_fp32_reference(case, frames, references):
    model, precision, detector = case
    found = detector.detect(frames)
    reference = references(model)
    if precision == "fp32":
        for got, want in zip(found, reference, strict=True):
            np.testing.assert_allclose(got.xyxy, want.xyxy, atol=0.5)
            np.testing.assert_array_equal(got.class_id, want.class_id)
        return
    recall, precision_ = recall_precision(found, reference, PERSON)
    assert recall >= MIN_RECALL and precision_ >= MIN_PRECISION, (recall, precision_)
