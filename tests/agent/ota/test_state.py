"""Persisted OTA state (atomic, strict) and the slot layout's ONNX external-data check."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from agent.ota.control import Baseline, ModelRef
from agent.ota.errors import ErrorCode, OtaError
from agent.ota.slots import SlotLayout, check_external_data, other_slot, served_model
from agent.ota.state import OtaState, StateStore, Update
from agent.settings.zones import ZonesDoc


def _update(step: str = "download") -> Update:
    return Update(kind="model", version=3, envelope="{}", slot="b", previous="a", previous_version=2, step=step)


def test_a_fresh_device_has_an_empty_state(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.json").load()
    assert state.update is None and state.refused_versions() == {}
    assert all(state.of(k).active is None for k in ("model", "zones", "config"))


def test_save_then_load_round_trips_without_leaving_temp_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "ota" / "state.json")
    state = OtaState().with_kind("model", active="a", active_version=2, last_version=2, failed_version=5)
    state = state.model_copy(update={"update": _update()})
    store.save(state)
    store.save(state.with_step("verify"))
    assert store.load() == state.with_step("verify")
    assert os.listdir(tmp_path / "ota") == ["state.json"]
    assert store.load().refused_versions() == {"model": 5}


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"kinds": {"model": {"active": "c"}}}', b'{"extra": 1}'])
def test_an_unreadable_state_is_a_storage_error_not_a_guess(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "state.json").write_bytes(content)
    with pytest.raises(OtaError) as caught:
        StateStore(tmp_path / "state.json").load()
    assert caught.value.code == ErrorCode.STORAGE_FAILED


def test_served_slot_follows_the_active_slot_and_the_previous_one_while_rolling_back(tmp_path: Path) -> None:
    state = OtaState().with_kind("model", active="b", active_version=3).model_copy(update={"update": _update("watch")})
    assert state.served_slot("model") == "b"
    assert state.with_step("rollback").served_slot("model") == "a"
    assert state.served_slot("zones") is None
    layout = SlotLayout(tmp_path)
    baseline = Baseline(ModelRef(tmp_path / "factory.json", tmp_path), ZonesDoc(), {})
    slot_b = tmp_path / "model" / "b"
    assert served_model(layout, state, baseline) == ModelRef(slot_b / "model.json", slot_b)
    assert served_model(layout, OtaState(), baseline) == baseline.model
    assert (other_slot(None), other_slot("a"), other_slot("b")) == ("a", "b", "a")


def _model_with_external(folder: Path, location: str) -> Path:
    weights = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    weights.data_location = TensorProto.EXTERNAL
    del weights.float_data[:]
    weights.external_data.add(key="location", value=location)
    then_graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=weights)], "then", [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])],
    )
    # The external tensor sits in a subgraph attribute: the check must walk nested graphs too.
    node = helper.make_node("If", ["cond"], ["out"], then_branch=then_graph, else_branch=then_graph)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])],
    )
    path = folder / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize(
    "location",
    ["../secret.bin", "/etc/passwd", "sub/../../secret.bin", "C:\\secret.bin", "sub\\..\\..\\x", "", "link/x"],
)
def test_external_data_leaving_the_folder_is_refused(tmp_path: Path, location: str) -> None:
    folder = tmp_path / "slot"
    folder.mkdir()
    (folder / "link").symlink_to(tmp_path)  # a symlink out of the folder counts as leaving it
    with pytest.raises(OtaError) as caught:
        check_external_data(_model_with_external(folder, location))
    assert caught.value.code == ErrorCode.UNSAFE_EXTERNAL_DATA


@pytest.mark.parametrize("location", ["weights.bin", "sub/weights.bin", "./weights.bin"])
def test_external_data_inside_the_folder_is_accepted(tmp_path: Path, location: str) -> None:
    check_external_data(_model_with_external(tmp_path, location))


def test_a_file_that_is_not_onnx_is_model_invalid(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(OtaError) as caught:
        check_external_data(tmp_path / "m.onnx")
    assert caught.value.code == ErrorCode.MODEL_INVALID


def test_the_shipped_models_have_no_external_data(models_dir: Path) -> None:
    for name in ("yolox_nano.onnx", "light_person_detector.onnx"):
        check_external_data(models_dir / name)
        assert all(t.data_location != TensorProto.EXTERNAL for t in onnx.load(models_dir / name).graph.initializer)
