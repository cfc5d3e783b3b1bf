"""The TensorRT backend on a real GPU. Skipped where tensorrt does not import: the pure rules it
relies on are covered by test_tensorrt_plan.py, its bookkeeping by test_tensorrt_bookkeeping.py."""

import numpy as np
import pytest

from engines.onnxruntime_engine import OnnxRuntimeEngine

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed here (needs an NVIDIA GPU and NVIDIA's wheels)")
pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (>= 12.6.2) is not installed")

from engines.tensorrt_engine import TensorRTEngine  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine_fp32(models_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("trt")
    with TensorRTEngine(models_dir / "yolox_nano.onnx", max_batch=4, precision="fp32", cache_dir=cache) as engine:
        yield engine, cache


def test_specs_and_batches_match_onnxruntime(engine_fp32, models_dir):
    engine, _ = engine_fp32
    assert [s.name for s in engine.inputs] == ["images"] and engine.inputs[0].shape == (-1, 3, 416, 416)
    assert engine.outputs[0].shape == (-1, 3549, 85) and engine.outputs[0].dtype == np.float32
    batch = (np.random.default_rng(0).random((2, 3, 416, 416)) * 255).astype(np.float32)
    with OnnxRuntimeEngine(models_dir / "yolox_nano.onnx", max_batch=2) as reference:
        expected = reference.infer(batch)["output"]
    for n in (1, 2):
        got = engine.infer(batch[:n])["output"]
        assert got.shape == (n, 3549, 85)
        np.testing.assert_allclose(got[..., 4:], expected[:n, :, 4:], atol=0.01)  # TF32 convolutions


def test_engine_cache_reused_and_keyed(engine_fp32, models_dir):
    _, cache = engine_fp32
    plans = sorted(cache.glob("*.plan"))
    assert len(plans) == 1 and list(cache.glob("timing-*.cache"))
    before = plans[0].stat().st_mtime_ns
    with TensorRTEngine(models_dir / "yolox_nano.onnx", max_batch=4, precision="fp32", cache_dir=cache):
        pass
    assert plans[0].stat().st_mtime_ns == before  # deserialized, not rebuilt


def test_oversized_batch_refused(engine_fp32):
    engine, _ = engine_fp32
    with pytest.raises(ValueError):
        engine.infer(np.zeros((5, 3, 416, 416), np.float32))


def test_cache_entry_names_the_engine_built_and_flags_another_model(engine_fp32, models_dir):
    """What `edge-agent doctor` checks: the cached engine matches this GPU and model, and no other."""
    from engines.tensorrt_engine import engine_cache_entry
    from engines.tensorrt_plan import cached_engine_problem

    _, cache = engine_fp32
    path, key = engine_cache_entry(models_dir / "yolox_nano.onnx", "fp32", 4, cache_dir=cache)
    assert path.is_file() and cached_engine_problem(path, key) is None
    other_path, other_key = engine_cache_entry(models_dir / "light_person_detector.onnx", "fp32", 4, cache_dir=cache)
    assert other_key.max_batch == 1  # its graph hard-codes batch 1: the ONNX Runtime rule, batch-1 fallback
    assert cached_engine_problem(other_path, other_key) == "no cached engine"


def test_fixed_batch_graph_runs_at_batch_one(models_dir, tmp_path):
    with TensorRTEngine(models_dir / "light_person_detector.onnx", max_batch=4, precision="fp32", cache_dir=tmp_path) as engine:
        assert engine.max_batch == 1
        out = engine.infer(np.zeros((1, 3, 192, 192), np.float32))
        assert out["output"].shape == (1, 756, 6)
