import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engines.base import TensorSpec
from engines.manifest import (
    ModelError,
    check_engine_tensors,
    load_manifest,
    resolve_model_file,
    verify_sha256,
)
from engines.onnxruntime_engine import OnnxRuntimeEngine
from tests.engines.conftest import write_json

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "classes"), [("yolox_nano", 80), ("light_person_detector", 1)])
def test_shipped_manifests_match_their_files(manifests_dir, models_dir, name, classes):
    manifest = load_manifest(manifests_dir / f"{name}.json")
    path = resolve_model_file(manifest, models_dir)
    assert path.stat().st_size == manifest.size_bytes
    assert verify_sha256(path, manifest.sha256) == manifest.sha256
    assert len(manifest.classes) == classes and manifest.classes[0] == "person"


def test_yolox_class_map_defaults(manifests_dir):
    manifest = load_manifest(manifests_dir / "yolox_nano.json")
    by_category: dict[str, set[str]] = {}
    for name, category in manifest.class_map.items():
        by_category.setdefault(category, set()).add(name)
    assert by_category == {
        "person": {"person"},
        "vehicle": {"bicycle", "car", "motorcycle", "bus", "truck"},
        "bag": {"backpack", "handbag", "suitcase"},
        "weapon": {"knife"},
    }
    assert manifest.class_ids(["person", "car", "knife"]).tolist() == [0, 2, 43]
    with pytest.raises(ModelError, match="firearm"):
        manifest.class_ids(["person", "firearm"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"speed": 3}, "speed"),
        ({"sha256": "ABC"}, "sha256"),
        ({"file": "../escape.onnx"}, "file"),
        ({"url": "ftp://example.org/m.onnx"}, "url"),
        ({"size_bytes": 0}, "size_bytes"),
        ({"precision": "int4"}, "precision"),
        ({"classes": []}, "classes"),
        ({"classes": ["a", "a", "b"]}, "classes"),
        ({"class_map": {"dragon": "weapon"}}, "class_map"),
        ({"strides": [8, 16, 32]}, "size_wh"),  # 16 px high is not a multiple of 32
        ({"input": {"name": "images"}}, "input.size_wh"),
        ({"outputs": {}}, "outputs"),
    ],
)
def test_bad_manifest_names_file_and_field(tmp_path, tiny_manifest_dict, change, field):
    path = write_json(tmp_path / "bad.json", tiny_manifest_dict | change)
    with pytest.raises(ModelError, match=field) as error:
        load_manifest(path)
    assert str(path) in str(error.value)


def test_missing_field_and_broken_json(tmp_path, tiny_manifest_dict):
    del tiny_manifest_dict["license"]
    with pytest.raises(ModelError, match="license: Field required"):
        load_manifest(write_json(tmp_path / "m.json", tiny_manifest_dict))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ModelError, match="broken.json: cannot read manifest"):
        load_manifest(tmp_path / "broken.json")


def test_missing_file_and_hash_mismatch(tmp_path, tiny_manifest):
    with pytest.raises(ModelError, match="'tiny.onnx' of 'tiny' not found"):
        resolve_model_file(tiny_manifest, tmp_path)
    (tmp_path / "tiny.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="sha256 mismatch: expected 0000"):
        verify_sha256(resolve_model_file(tiny_manifest, tmp_path), tiny_manifest.sha256)


def test_non_onnx_file_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is a text file, not a protobuf\n" * 10)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        OnnxRuntimeEngine(path)


def _two_input_graph(path: Path) -> Path:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3, 8, 8])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["out"])], "two_inputs", [a, b], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def test_graph_with_two_inputs_is_refused(tmp_path):
    with pytest.raises(ModelError, match=r"two.onnx: expected one image input, graph has \['a', 'b'\]"):
        OnnxRuntimeEngine(_two_input_graph(tmp_path / "two.onnx"))


def test_real_graph_disagreeing_with_manifest_is_refused(manifests_dir, models_dir):
    light = load_manifest(manifests_dir / "light_person_detector.json")
    yolox_path = models_dir / "yolox_nano.onnx"
    with OnnxRuntimeEngine(yolox_path, max_batch=1) as engine:
        with pytest.raises(ModelError) as error:
            check_engine_tensors(light, engine.inputs, engine.outputs, yolox_path)
    message = str(error.value)
    assert "yolox_nano.onnx" in message and "'light_person_detector'" in message
    assert "input 'images' shape (1, 3, 416, 416) != manifest (B, 3, 192, 192)" in message
    assert "output 'output' shape (1, 3549, 85) != manifest (B, 756, 6)" in message


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        ([TensorSpec("input", (-1, 3, 16, 32), np.dtype(np.float32))], None, r"input names \['input'\]"),
        ([TensorSpec("images", (-1, 3, 16, 32), np.dtype(np.float16))], None, "dtype float16"),
        (None, [TensorSpec("output", (1, 10, 8, 1), np.dtype(np.float32))], r"shape \(1, 10, 8, 1\)"),
        (None, [], r"output names \[\]"),
    ],
)
def test_tensor_mismatch_table(tiny_manifest, inputs, outputs, message):
    good_in = [TensorSpec("images", (-1, 3, 16, 32), np.dtype(np.float32))]
    good_out = [TensorSpec("output", (-1, 10, 8), np.dtype(np.float32))]
    check_engine_tensors(tiny_manifest, good_in, good_out, Path("tiny.onnx"))
    with pytest.raises(ModelError, match=message):
        check_engine_tensors(
            tiny_manifest, good_in if inputs is None else inputs, good_out if outputs is None else outputs, Path("x")
        )


def test_manifest_files_are_plain_json(manifests_dir):
    for path in manifests_dir.glob("*.json"):
        assert json.loads(path.read_text())["file"].endswith(".onnx")


def test_a_model_file_beside_its_manifest_is_found_when_models_dir_lacks_it(tmp_path, models_dir):
    """Where `edge-agent calibrate` writes its INT8 model: the manifest and the ONNX side by side."""
    import shutil

    folder = tmp_path / "int8"
    folder.mkdir()
    shutil.copy(REPO / "models" / "light_person_detector.json", folder)
    shutil.copy(models_dir / "light_person_detector.onnx", folder)
    manifest = load_manifest(folder / "light_person_detector.json")
    assert resolve_model_file(manifest, tmp_path / "elsewhere") == folder / "light_person_detector.onnx"
    assert resolve_model_file(manifest, models_dir) == models_dir / "light_person_detector.onnx"  # models_dir first
