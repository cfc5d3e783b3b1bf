"""One model file at another input size, by its manifest (`input.graph_size_wh`): yolox_nano at 320x320."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.detector import Detector
from engines.manifest import ModelError, load_manifest
from engines.nms import iou_matrix


@pytest.fixture(scope="module")
def vtest_frame(media_dir: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 200)
    ok, image = capture.read()
    assert ok
    return image


def test_yolox_nano_runs_at_320_and_finds_the_people_it_finds_at_416(manifests_dir, models_dir, vtest_frame):
    small_manifest = load_manifest(manifests_dir / "yolox_nano_320.json")
    assert small_manifest.sha256 == load_manifest(manifests_dir / "yolox_nano.json").sha256  # the same file
    with Detector.open(manifests_dir / "yolox_nano_320.json", models_dir, class_names=["person"]) as small, \
         Detector.open(manifests_dir / "yolox_nano.json", models_dir, class_names=["person"]) as full:  # fmt: skip
        assert small.max_batch > 1  # still batched
        a, b = small.detect([vtest_frame, vtest_frame]), full.detect([vtest_frame])[0]
    np.testing.assert_allclose(a[0].xyxy, a[1].xyxy, atol=1e-3)
    confident = b.select(b.confidence >= 0.5)
    assert len(confident) >= 3
    # every confident person at 416 is found at 320 too, in the same place (the decoder follows the 40/20/10 grid)
    assert (iou_matrix(confident.xyxy, a[0].xyxy).max(axis=1) >= 0.5).all()


def test_a_size_the_graph_does_not_give_is_refused(manifests_dir, models_dir, tmp_path):
    raw = json.loads((manifests_dir / "yolox_nano_320.json").read_text())
    raw["outputs"] = {"output": [3549, 85]}  # the 416 grid's rows, claimed for 320
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match=r"output 'output' shape .*2100, 85"):
        Detector.open(bad, models_dir)


def test_other_backends_are_told_to_use_the_graphs_own_size(manifests_dir, models_dir):
    with pytest.raises(ModelError, match="only the onnxruntime backend"):
        Detector.open(manifests_dir / "yolox_nano_320.json", models_dir, backend="tensorrt")


def test_one_detector_runs_each_image_at_the_size_its_camera_asks_for(manifests_dir, models_dir, vtest_frame):
    """`sizes_wh`: the 416 manifest opened at 320 too gives, for the images asked at 320, exactly the boxes of the
    320 manifest, and the 416 ones for the others, in one call, in the images' order."""
    with Detector.open(manifests_dir / "yolox_nano.json", models_dir, class_names=["person"], sizes_wh=[(320, 320)]) as both, \
         Detector.open(manifests_dir / "yolox_nano_320.json", models_dir, class_names=["person"]) as small, \
         Detector.open(manifests_dir / "yolox_nano.json", models_dir, class_names=["person"]) as full:  # fmt: skip
        flipped = vtest_frame[:, ::-1].copy()
        mixed = both.detect([vtest_frame, flipped, flipped], [(320, 320), None, (416, 416)])
        assert sum(both.last_timings_s.values()) > 0
        expected = [small.detect([vtest_frame])[0], *full.detect([flipped, flipped])]
        for got, want in zip(mixed, expected):
            np.testing.assert_array_equal(got.xyxy, want.xyxy)
        with pytest.raises(ModelError, match=r"not opened at input size \(256, 256\)"):
            both.detect([vtest_frame], [(256, 256)])


def test_another_size_on_another_backend_is_refused_with_the_fix(manifests_dir, models_dir):
    with pytest.raises(ModelError, match="only the onnxruntime backend runs a graph at another input size"):
        Detector.open(manifests_dir / "yolox_nano.json", models_dir, backend="tensorrt", sizes_wh=[(320, 320)])


def test_a_graph_that_cannot_run_at_another_size_is_refused_naming_the_setting(manifests_dir, models_dir):
    """NanoDet-m reshapes to its own grid inside the graph: the runtime's failure becomes a ModelError."""
    with pytest.raises(ModelError, match=r"cannot run at input size \(320, 320\).*detect.input_size_wh"):
        Detector.open(manifests_dir / "nanodet_m_416.json", models_dir, sizes_wh=[(320, 320)])
