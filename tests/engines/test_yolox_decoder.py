import math

import numpy as np
import pytest

from engines.decoders import make_decoder
from engines.decoders.yolox import YoloxDecoder, yolox_grids
from engines.manifest import ModelError, ModelManifest


def test_grids_follow_yolox_row_order():
    """Stride 8 on 32x16: a 4x2 map, x fastest; then stride 16: a 2x1 map."""
    grid_xy, stride = yolox_grids((32, 16), (8, 16))
    assert grid_xy.tolist() == [[0, 0], [1, 0], [2, 0], [3, 0], [0, 1], [1, 1], [2, 1], [3, 1], [0, 0], [1, 0]]
    assert stride.ravel().tolist() == [8] * 8 + [16] * 2
    assert yolox_grids((32, 16), (8, 16))[0] is grid_xy  # computed once per input size


@pytest.mark.parametrize(
    "size_wh, strides, rows",
    [((416, 416), (8, 16, 32), 3549), ((192, 192), (8, 16, 32), 756), ((640, 384), (8, 16, 32), 5040)],
)
def test_grid_row_counts(size_wh, strides, rows):
    assert len(yolox_grids(size_wh, strides)[0]) == rows


def _raw(row: int, values: list[float]) -> np.ndarray:
    """One image of raw output (1, 10, 8): all zeros except `row`."""
    raw = np.zeros((1, 10, 8), np.float32)
    raw[0, row] = values
    return raw


@pytest.mark.parametrize(
    ("row", "values", "scale", "size_wh", "xyxy", "score", "class_id"),
    [
        # stride 8, cell (0, 0): centre (0.5*8, 0.5*8) = (4, 4), size exp(0)*8 = 8
        (0, [0.5, 0.5, 0, 0, 0.9, 0.1, 0.8, 0.2], 1.0, (32, 16), [0, 0, 8, 8], 0.72, 1),
        # stride 8, cell (3, 1): centre ((3+0.5)*8, (1+0.5)*8) = (28, 12), size 16x8: x2 = 36 clipped to 32
        (7, [0.5, 0.5, math.log(2), 0, 1.0, 0.9, 0.0, 0.0], 1.0, (32, 16), [20, 8, 32, 16], 0.9, 0),
        # stride 16, cell (1, 0): centre (24, 8), size 16x16; scale 0.5 maps input px back to twice as many source px
        (9, [0.5, 0.5, 0, 0, 0.8, 0.0, 0.0, 1.0], 0.5, (64, 32), [32, 0, 64, 32], 0.8, 2),
        # negative offsets: centre ((2-0.5)*8, (0+0.25)*8) = (12, 2), size 4x4 (exp(ln .5)*8)
        (2, [-0.5, 0.25, math.log(0.5), math.log(0.5), 0.5, 0.0, 0.7, 0.0], 1.0, (32, 16), [10, 0, 14, 4], 0.35, 1),
    ],
)
def test_decode_one_row(tiny_manifest, row, values, scale, size_wh, xyxy, score, class_id):
    (found,) = YoloxDecoder(tiny_manifest)({"output": _raw(row, values)}, np.array([scale]), [size_wh], 0.3)
    assert len(found) == 1
    np.testing.assert_allclose(found.xyxy[0], xyxy, atol=1e-4)
    assert found.confidence[0] == pytest.approx(score, abs=1e-6)
    assert found.class_id[0] == class_id
    assert (found.xyxy.dtype, found.confidence.dtype, found.class_id.dtype) == (np.float32, np.float32, np.int32)


@pytest.mark.parametrize(
    ("values", "confidence", "class_ids", "expected_classes"),
    [
        ([0, 0, 0, 0, 0.9, 0.5, 0.3, 0.4], 0.3, None, [0]),  # 0.45 passes, best class 0
        ([0, 0, 0, 0, 0.9, 0.5, 0.3, 0.4], 0.5, None, []),  # 0.45 < 0.5
        ([0, 0, 0, 0, 0.2, 1.0, 1.0, 1.0], 0.3, None, []),  # objectness alone below the threshold
        ([0, 0, 0, 0, 0.9, 0.5, 0.3, 0.4], 0.3, [1, 2], [2]),  # best allowed class, labelled with its model id
        ([0, 0, 0, 0, 0.9, 0.5, 0.3, 0.4], 0.3, [1], []),  # 0.27 for the only allowed class
        ([0, 0, 0, 0, 0.9, 0.5, 0.3, 0.4], 0.2, [1], [1]),
    ],
)
def test_confidence_and_class_filter(tiny_manifest, values, confidence, class_ids, expected_classes):
    ids = None if class_ids is None else np.array(class_ids, np.int32)
    (found,) = YoloxDecoder(tiny_manifest)({"output": _raw(4, values)}, np.array([1.0]), [(32, 16)], confidence, ids)
    assert found.class_id.tolist() == expected_classes


def test_decode_batch_keeps_images_apart(tiny_manifest):
    raw = np.concatenate([_raw(0, [0.5, 0.5, 0, 0, 0.9, 1, 0, 0]), _raw(9, [0.5, 0.5, 0, 0, 0.9, 0, 1, 0])])
    before = raw.copy()
    first, second = YoloxDecoder(tiny_manifest)({"output": raw}, np.array([1.0, 2.0]), [(32, 16), (64, 32)], 0.3)
    assert first.class_id.tolist() == [0] and second.class_id.tolist() == [1]
    np.testing.assert_allclose(second.xyxy, [[8, 0, 16, 8]])
    np.testing.assert_array_equal(raw, before)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outputs": {"output": [10, 9]}}, "implied by"),
        ({"outputs": {"output": [11, 8]}}, "implied by"),
        ({"outputs": {"a": [10, 8], "b": [10, 8]}}, "one output"),
        ({"decoder": "ssd"}, "unknown decoder"),
    ],
)
def test_decoder_refuses_inconsistent_manifest(tiny_manifest_dict, change, message):
    manifest = ModelManifest.model_validate(tiny_manifest_dict | change)
    with pytest.raises(ModelError, match=message):
        make_decoder(manifest)
