"""Contract of the ONNX Runtime engine: specs, dtypes, shapes, batching, errors."""

import numpy as np
import pytest

from engines.onnxruntime_engine import OnnxRuntimeEngine, cores
from engines.registry import open_engine

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("model", "input_hw", "output_shape"),
    [("yolox_nano", (416, 416), (3549, 85)), ("light_person_detector", (192, 192), (756, 6))],
)
def test_engine_contract(models_dir, model, input_hw, output_shape):
    max_batch = 4  # the light person model's graph is fixed at batch 1: it runs the batch image by image
    with open_engine("onnxruntime", models_dir / f"{model}.onnx", max_batch=max_batch) as engine:
        assert isinstance(engine, OnnxRuntimeEngine)
        assert engine.max_batch == max_batch
        (spec,) = engine.inputs
        assert spec.name == "images" and spec.shape[1:] == (3, *input_hw) and spec.dtype == np.float32
        (out,) = engine.outputs
        assert out.shape[1:] == output_shape and out.dtype == np.float32
        batch = np.full((max_batch, 3, *input_hw), 114, np.float32)
        result = engine.infer(batch)
        assert result["output"].shape == (max_batch, *output_shape) and result["output"].dtype == np.float32
        for bad in (np.zeros((max_batch + 1, 3, *input_hw), np.float32), batch.astype(np.float64), batch[:, :, :8]):
            with pytest.raises(ValueError, match="expected float32"):
                engine.infer(bad)


def test_max_batch_one_keeps_the_graph_fixed(models_dir):
    with OnnxRuntimeEngine(models_dir / "yolox_nano.onnx", max_batch=1) as engine:
        assert engine.max_batch == 1 and engine.inputs[0].shape[0] == 1


def test_registry_errors(models_dir):
    with pytest.raises(ValueError, match="unknown inference backend 'openvino'"):
        open_engine("openvino", models_dir / "yolox_nano.onnx")


@pytest.mark.parametrize(("model", "input_hw"), [("yolox_nano", (416, 416)), ("light_person_detector", (192, 192))])
def test_a_batch_split_between_sessions_gives_what_one_session_gives(models_dir, model, input_hw):
    """Two split sessions run a batch of 3 as parts of 2 and 1 side by side; rows come back in order.
    The light person model's graph is fixed at batch 1: each session runs its part image by image."""
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (3, 3, *input_hw)).astype(np.float32)
    path = models_dir / f"{model}.onnx"
    with OnnxRuntimeEngine(path, max_batch=4, sessions=1) as one, OnnxRuntimeEngine(path, max_batch=4, sessions=2) as two:
        assert (len(one._split), len(two._split)) == (0, 2)
        expected = np.concatenate([one.infer(batch[i : i + 1])["output"] for i in range(3)])
        np.testing.assert_allclose(two.infer(batch)["output"], expected, atol=1e-3)
        np.testing.assert_allclose(two.infer(batch[:1])["output"], expected[:1], atol=1e-3)


def test_a_graph_fixed_at_batch_one_gets_one_session_on_every_core(models_dir):
    with OnnxRuntimeEngine(models_dir / "yolox_nano.onnx", max_batch=1, sessions=2) as engine:
        assert not engine._split
        assert engine._session.get_session_options().intra_op_num_threads == cores()


def test_by_default_one_image_on_every_core_and_a_batch_split_a_session_per_core(models_dir):
    with OnnxRuntimeEngine(models_dir / "yolox_nano.onnx", max_batch=8) as engine:
        assert engine._session.get_session_options().intra_op_num_threads == cores()
        split = min(cores(), 4)
        assert len(engine._split) == (split if split > 1 else 0)
        assert {s.get_session_options().intra_op_num_threads for s in engine._split} <= {max(1, cores() // split)}
