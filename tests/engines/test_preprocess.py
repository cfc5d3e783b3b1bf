import numpy as np
import pytest

from engines.preprocess import Letterbox


@pytest.mark.parametrize(
    ("src_hw", "size_wh", "scale", "content_hw"),
    [
        ((576, 768), (416, 416), 416 / 768, (312, 416)),  # landscape: width fills
        ((768, 576), (416, 416), 416 / 768, (416, 312)),  # portrait: height fills
        ((100, 100), (192, 192), 1.92, (192, 192)),  # upscale, square
        ((416, 416), (416, 416), 1.0, (416, 416)),  # identity
        ((240, 320), (320, 192), 0.8, (192, 256)),  # non-square input
    ],
)
def test_letterbox_scale_and_top_left_padding(src_hw, size_wh, scale, content_hw):
    image = np.full((*src_hw, 3), 200, np.uint8)
    batch, scales = Letterbox(size_wh, 1, pad_value=114)([image])
    assert batch.shape == (1, 3, size_wh[1], size_wh[0]) and batch.dtype == np.float32
    assert scales.dtype == np.float32 and scales[0] == pytest.approx(scale, rel=1e-6)
    h, w = content_hw
    assert (batch[0, :, :h, :w] == 200).all()
    assert (batch[0, :, h:, :] == 114).all() and (batch[0, :, :, w:] == 114).all()


def test_letterbox_maps_a_point_back_to_source_pixels():
    """A bright pixel at source (x=600, y=300) lands at input (x, y) * scale; / scale maps it back."""
    image = np.zeros((576, 768, 3), np.uint8)
    image[296:305, 596:605] = 255
    batch, scales = Letterbox((416, 416), 1)([image])
    ys, xs = np.nonzero(batch[0, 0] > 128)
    assert (xs.mean() / scales[0], ys.mean() / scales[0]) == pytest.approx((600, 300), abs=1.0)


@pytest.mark.parametrize(
    ("channel_order", "mean", "std", "expected_chw"),
    [
        ("bgr", (0, 0, 0), (1, 1, 1), (10, 20, 30)),
        ("rgb", (0, 0, 0), (1, 1, 1), (30, 20, 10)),
        ("bgr", (10, 10, 10), (2, 4, 5), (0, 2.5, 4)),
        ("rgb", (30, 20, 10), (1, 1, 1), (0, 0, 0)),
    ],
)
def test_letterbox_channel_order_and_normalisation(channel_order, mean, std, expected_chw):
    image = np.empty((8, 8, 3), np.uint8)
    image[:] = (10, 20, 30)  # B, G, R
    batch, _ = Letterbox((8, 8), 1, channel_order=channel_order, mean=mean, std=std)([image])
    np.testing.assert_allclose(batch[0, :, 0, 0], expected_chw, rtol=1e-6)


def test_letterbox_batch_of_mixed_sizes_does_not_mutate_images():
    small = np.random.default_rng(1).integers(0, 255, (120, 160, 3), np.uint8)
    big = np.random.default_rng(2).integers(0, 255, (480, 320, 3), np.uint8)
    copies = (small.copy(), big.copy())
    letterbox = Letterbox((64, 64), 4)
    batch, scales = letterbox([small, big])
    assert batch.shape == (2, 3, 64, 64)
    np.testing.assert_allclose(scales, [64 / 160, 64 / 480])
    alone, _ = Letterbox((64, 64), 1)([big])
    np.testing.assert_array_equal(alone[0], batch[1])
    np.testing.assert_array_equal(small, copies[0])
    np.testing.assert_array_equal(big, copies[1])


@pytest.mark.parametrize(
    "images",
    [
        [],
        [np.zeros((8, 8, 3), np.uint8)] * 3,
        [np.zeros((8, 8, 3), np.float32)],
        [np.zeros((8, 8), np.uint8)],
    ],
)
def test_letterbox_rejects_bad_batches(images):
    with pytest.raises(ValueError):
        Letterbox((8, 8), 2)(images)
