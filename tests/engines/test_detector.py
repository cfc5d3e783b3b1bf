"""The real models on real frames of vtest.avi."""

import hashlib
import json

import cv2
import numpy as np
import pytest

from engines.detector import Detector
from engines.manifest import ModelError
from engines.types import Detections
from tests.engines.conftest import write_json

pytestmark = pytest.mark.integration

PERSON, CAR = 0, 2


@pytest.fixture(scope="module")
def frames(media_dir):
    """Frames 3 and 4 (0-based) of vtest.avi, BGR uint8 (576, 768, 3)."""
    capture = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    images = []
    for _ in range(5):
        ok, image = capture.read()
        assert ok, "cannot decode vtest.avi"
        images.append(image)
    capture.release()
    return images[3:5]


@pytest.fixture(scope="module")
def yolox(manifests_dir, models_dir):
    with Detector.open(manifests_dir / "yolox_nano.json", models_dir) as detector:
        yield detector


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_frame_3_finds_people_and_cars(yolox, frames, models_dir):
    frame = frames[0]
    before = frame.copy()
    (found,) = yolox.detect([frame])
    np.testing.assert_array_equal(frame, before)
    people = found.confidence[found.class_id == PERSON]
    assert len(people) >= 4
    assert 0.78 <= people.max() <= 0.88 and people.min() >= 0.3
    assert CAR in found.class_id
    assert (np.diff(found.confidence) <= 0).all()
    assert (found.xyxy >= 0).all() and (found.xyxy[:, [0, 2]] <= 768).all() and (found.xyxy[:, [1, 3]] <= 576).all()
    # the walker on the right of the plaza, measured once by hand from this frame
    walker = np.array([617, 240, 651, 324], np.float32)
    assert max(_iou(walker, box) for box in found.xyxy[found.class_id == PERSON]) > 0.8
    assert yolox.model_sha256 == hashlib.sha256((models_dir / yolox.manifest.file).read_bytes()).hexdigest()
    assert set(yolox.last_timings_s) == {"preprocess", "inference", "postprocess"}
    assert all(t > 0 for t in yolox.last_timings_s.values())


def test_batch_of_two_equals_two_singles(yolox, frames):
    assert yolox.max_batch > 1, "yolox_nano should have been made batch-dynamic"
    together = yolox.detect(frames)
    singles = [yolox.detect([frame])[0] for frame in frames]
    for batched, single in zip(together, singles, strict=True):
        np.testing.assert_array_equal(batched.class_id, single.class_id)
        np.testing.assert_allclose(batched.xyxy, single.xyxy, atol=0.05)
        np.testing.assert_allclose(batched.confidence, single.confidence, atol=1e-4)


def test_more_images_than_max_batch(manifests_dir, models_dir, frames):
    with Detector.open(manifests_dir / "yolox_nano.json", models_dir, max_batch=2) as detector:
        results = detector.detect([frames[0], frames[1], frames[0]])
    assert len(results) == 3
    np.testing.assert_array_equal(results[0].xyxy, results[2].xyxy)


def test_boxes_are_in_source_pixels_for_any_size(yolox, frames):
    (full,) = yolox.detect([frames[0]])
    half = cv2.resize(frames[0], (384, 288), interpolation=cv2.INTER_AREA)
    (small,) = yolox.detect([half])
    full_people = full.xyxy[(full.class_id == PERSON) & (full.confidence > 0.6)]
    small_people = small.xyxy[small.class_id == PERSON] * 2
    # the model sees nearly the same 416-px letterbox both times, so boxes scale with the image
    for box in full_people:
        assert max(_iou(box, other) for other in small_people) > 0.7


def test_class_names_filter(manifests_dir, models_dir, frames):
    with Detector.open(manifests_dir / "yolox_nano.json", models_dir, class_names=["car", "truck"]) as detector:
        (found,) = detector.detect([frames[0]])
    assert len(found) > 0 and set(found.class_id.tolist()) <= {CAR, 7}
    with pytest.raises(ModelError, match=r"no classes \['dragon'\]"):
        Detector.open(manifests_dir / "yolox_nano.json", models_dir, class_names=["person", "dragon"])


def test_light_person_detector(manifests_dir, models_dir, frames):
    with Detector.open(manifests_dir / "light_person_detector.json", models_dir) as detector:
        assert detector.max_batch > 1  # its graph hard-codes batch 1 in a Reshape: the engine runs image by image
        results = detector.detect(frames)
        single = detector.detect([frames[1]])[0]
    assert len(results) == 2 and all(isinstance(r, Detections) for r in results)
    assert len(results[0]) >= 2 and set(results[0].class_id.tolist()) == {PERSON}
    assert results[0].confidence.max() > 0.6
    np.testing.assert_array_equal(results[1].xyxy, single.xyxy)


def test_model_file_with_wrong_hash_is_refused(tmp_path, manifests_dir, models_dir):
    data = json.loads((manifests_dir / "yolox_nano.json").read_text()) | {"sha256": "f" * 64}
    with pytest.raises(ModelError, match="sha256 mismatch"):
        Detector.open(write_json(tmp_path / "m.json", data), models_dir)


def test_graph_disagreeing_with_manifest_is_refused(tmp_path, manifests_dir, models_dir):
    data = json.loads((manifests_dir / "yolox_nano.json").read_text())
    data["input"]["size_wh"] = [320, 320]
    with pytest.raises(ModelError, match=r"input 'images' shape \(-1, 3, 416, 416\) != manifest \(B, 3, 320, 320\)"):
        Detector.open(write_json(tmp_path / "m.json", data), models_dir)
