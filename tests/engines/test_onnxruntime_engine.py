"""Contract of the ONNX Runtime engine: specs, dtypes, shapes, batching, errors."""

import numpy as np
import pytest

from engines.onnxruntime_engine import OnnxRuntimeEngine
from engines.registry import open_engine

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("model", "input_hw", "output_shape", "max_batch"),
    [("yolox_nano", (416, 416), (3549, 85), 4), ("light_person_detector", (192, 192), (756, 6), 1)],
)
def test_engine_contract(models_dir, model, input_hw, output_shape, max_batch):
    with open_engine("onnxruntime", models_dir / f"{model}.onnx", max_batch=4) as engine:
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
