"""NanoDet (GFL) decoding on small tables and on real frames of vtest.avi against its ground truth."""

import json

import numpy as np
import pytest

import engines.decoders.nanodet as nanodet
from calibration.frames import read_frames, spread_indices
from calibration.metrics import (
    average_precision,
    load_mot_ground_truth,
    recall_precision,
)
from engines.decoders import make_decoder
from engines.detector import Detector
from engines.manifest import ModelError, ModelManifest


@pytest.fixture
def tiny_nanodet(tiny_manifest_dict) -> ModelManifest:
    """32x16 input, strides 8 and 16 (4x2 = 8 and 2x1 = 2 cells), 3 classes, reg_max 3 (16 logits)."""
    tiny_manifest_dict.update(
        decoder="nanodet",
        outputs={"cls_pred_stride_8": [8, 3], "cls_pred_stride_16": [2, 3],
                 "dis_pred_stride_8": [8, 16], "dis_pred_stride_16": [2, 16]},
    )
    return ModelManifest.model_validate(tiny_manifest_dict)


def _outputs(batch: int = 1) -> dict[str, np.ndarray]:
    out = {
        "cls_pred_stride_8": np.zeros((batch, 8, 3), np.float32),
        "cls_pred_stride_16": np.zeros((batch, 2, 3), np.float32),
        "dis_pred_stride_8": np.full((batch, 8, 16), -50.0, np.float32),
        "dis_pred_stride_16": np.full((batch, 2, 16), -50.0, np.float32),
    }
    out["cls_pred_stride_8"][0, 5, 2] = 0.9  # cell (x=1, y=1) of the 4x2 grid, class 2
    out["dis_pred_stride_8"][0, 5, [1, 6, 8, 15]] = 50.0  # bins: left 1, top 2, right 0, bottom 3
    out["cls_pred_stride_16"][0, 1, 0] = 0.6  # cell (x=1, y=0) of the 2x1 grid, class 0
    out["dis_pred_stride_16"][0, 1, [0, 4, 8, 12]] = 50.0  # all distances 0
    return out


def test_decodes_distances_from_cell_centres(tiny_nanodet):
    decoder = make_decoder(tiny_nanodet)
    (found,) = decoder(_outputs(), np.array([0.5], np.float32), [(64, 32)], confidence=0.3)
    # stride 8, centre (12, 12): x1 = 12 - 1*8, y1 = 12 - 2*8 (clipped to 0), x2 = 12, y2 = 12 + 3*8; then / scale 0.5
    order = np.argsort(-found.confidence)
    np.testing.assert_allclose(found.xyxy[order], [[8, 0, 24, 32], [48, 16, 48, 16]])
    np.testing.assert_allclose(found.confidence[order], [0.9, 0.6])
    np.testing.assert_array_equal(found.class_id[order], [2, 0])


def test_class_filter_and_threshold(tiny_nanodet):
    decoder = make_decoder(tiny_nanodet)
    (found,) = decoder(_outputs(), np.array([1.0], np.float32), [(32, 16)], confidence=0.3, class_ids=np.array([0]))
    np.testing.assert_array_equal(found.class_id, [0])
    (none,) = decoder(_outputs(), np.array([1.0], np.float32), [(32, 16)], confidence=0.95)
    assert len(none) == 0


def test_expected_distance_is_the_softmax_mean():
    logits = np.log(np.array([[0.5, 0.5, 0, 0] * 4], np.float32) + 1e-30)
    np.testing.assert_allclose(nanodet.expected_distances(logits, 3), [[0.5] * 4], atol=1e-6)


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"cls_pred_stride_8": [8, 3], "dis_pred_stride_8": [8, 16], "cls_pred_stride_16": [2, 3]}, "needs outputs"),
        ({"cls_pred_stride_8": [8, 3], "dis_pred_stride_8": [8, 15], "cls_pred_stride_16": [2, 3],
          "dis_pred_stride_16": [2, 16]}, "do not match"),
        ({"cls_pred_stride_8": [8, 3], "dis_pred_stride_8": [8, 16], "cls_pred_stride_16": [2, 3],
          "dis_pred_stride_16": [2, 32]}, "disagree on the number of distance bins"),
    ],
)
def test_manifest_outputs_checked(tiny_manifest_dict, outputs, message):
    tiny_manifest_dict.update(decoder="nanodet", outputs=outputs)
    with pytest.raises(ModelError, match=message):
        make_decoder(ModelManifest.model_validate(tiny_manifest_dict))


@pytest.mark.integration
def test_finds_the_vtest_people(manifests_dir, models_dir, media_dir):
    """30 annotated frames spread over the clip: NanoDet-m person AP50 measured 89.7 with
    letterbox + centre offset 0.5 (plain resize 88.5; offset 0: 24)."""
    truth = load_mot_ground_truth(media_dir / "vtest.gt.txt")
    indices = [i for i in spread_indices(795, 30) if i in truth]
    frames = list(read_frames(str(media_dir / "vtest.avi"), indices))
    with Detector.open(manifests_dir / "nanodet_m_416.json", models_dir, confidence=0.05) as detector:
        found = detector.detect([f.image for f in frames])
    reference = [truth[f.index] for f in frames]
    assert average_precision(found, reference, 0) > 0.85
    recall, precision = recall_precision([d.select(d.confidence >= 0.3) for d in found], reference, 0)
    assert recall > 0.85 and precision > 0.7


def test_manifest_matches_readme(manifests_dir):
    raw = json.loads((manifests_dir / "nanodet_m_416.json").read_text())
    assert raw["sha256"] == "08b62b9ee4a7878e7a64d6ef4faf3074322c033a0252c83a20f41b86c76e8146"
    assert raw["input"]["mean"] == [103.53, 116.28, 123.675] and raw["input"]["std"] == [57.375, 57.12, 58.395]
