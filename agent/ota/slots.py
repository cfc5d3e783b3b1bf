"""The A/B slot layout under `state_dir/ota`, what a starting agent serves from it, and ONNX file safety.

    state_dir/ota/state.json            the persisted OtaState
    state_dir/ota/<kind>/<a|b>/         one slot: artifacts and the staged document

An update is always staged into the slot that does not serve, so the live
version's files are never touched; switching is one write of `state.json`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import onnx
from onnx import AttributeProto, GraphProto, TensorProto

from agent.ota.control import Baseline, ModelRef
from agent.ota.errors import ErrorCode, OtaError
from agent.ota.manifest import Kind
from agent.ota.state import OtaState, Slot, StateStore
from agent.settings.zones import ZonesDoc
from engines.atomic import fsync_dir

MODEL_MANIFEST_FILE = "model.json"
ZONES_FILE = "zones.json"
CONFIG_PATCH_FILE = "config.json"


class SlotLayout:
    """Paths of the OTA state and slots under one root (normally `state_dir/ota`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def store(self) -> StateStore:
        return StateStore(self.root / "state.json")

    def slot_dir(self, kind: Kind, slot: Slot) -> Path:
        return self.root / kind / slot

    def clear(self, kind: Kind, slot: Slot) -> None:
        """Remove a slot's files (it must not be serving), as far as the disk lets."""
        shutil.rmtree(self.slot_dir(kind, slot), ignore_errors=True)

    def reset(self, kind: Kind, slot: Slot) -> Path:
        """Empty a slot (it must not be serving) and return its folder."""
        self.clear(kind, slot)
        folder = self.slot_dir(kind, slot)
        folder.mkdir(parents=True)
        fsync_dir(folder.parent)
        return folder

    def model_ref(self, slot: Slot) -> ModelRef:
        folder = self.slot_dir("model", slot)
        return ModelRef(folder / MODEL_MANIFEST_FILE, folder)

    def zones(self, slot: Slot) -> ZonesDoc:
        return ZonesDoc.model_validate_json((self.slot_dir("zones", slot) / ZONES_FILE).read_bytes())

    def config_patch(self, slot: Slot) -> dict[str, Any]:
        return json.loads((self.slot_dir("config", slot) / CONFIG_PATCH_FILE).read_text(encoding="utf-8"))


def other_slot(slot: Slot | None) -> Slot:
    """The slot an update is staged into: never the one serving."""
    return "b" if slot == "a" else "a"


def served_model(layout: SlotLayout, state: OtaState, baseline: Baseline) -> ModelRef:
    """The model a starting agent must open, from the persisted state alone."""
    slot = state.served_slot("model")
    return baseline.model if slot is None else layout.model_ref(slot)


def served_zones(layout: SlotLayout, state: OtaState, baseline: Baseline) -> ZonesDoc:
    """The zones a starting agent must use."""
    slot = state.served_slot("zones")
    return baseline.zones if slot is None else layout.zones(slot)


def committed_zones(layout: SlotLayout, state: OtaState, baseline: Baseline) -> ZonesDoc:
    """The zones document last committed, which a zones rollback returns to and the zones file
    holds: while a zones update is under way, the one it started from."""
    update = state.update
    slot = update.previous if update is not None and update.kind == "zones" else state.of("zones").active
    return baseline.zones if slot is None else layout.zones(slot)


def served_config_patch(layout: SlotLayout, state: OtaState, baseline: Baseline) -> dict[str, Any]:
    """The config patch a starting agent must apply over its config file."""
    slot = state.served_slot("config")
    return baseline.config_patch if slot is None else layout.config_patch(slot)


def check_external_data(model_path: Path) -> None:
    """Refuse an ONNX file whose external-data locations leave its folder.

    ONNX Runtime opens `location` relative to the model's folder: an absolute
    path or a `..` would let a signed-but-wrong manifest read any file on the
    box as weights. Every tensor is checked (initializers, sparse ones, and
    tensor attributes in nested subgraphs); symlinks are resolved too.
    Raises OtaError(unsafe_external_data), or OtaError(model_invalid) if the
    file is not ONNX.
    """
    folder = model_path.parent.resolve()
    for name, location in external_data(model_path).items():
        if not _stays_inside(location, folder):
            raise OtaError(
                ErrorCode.UNSAFE_EXTERNAL_DATA,
                f"{model_path.name}: tensor {name!r} reads external data {location!r} outside its folder",
            )


def external_data(model_path: Path) -> dict[str, str]:
    """Tensor name -> the file (relative to the model's folder) holding its data, for the tensors an ONNX file
    keeps outside itself. OtaError(model_invalid) if the file is not ONNX."""
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError... on a bad file
        raise OtaError(ErrorCode.MODEL_INVALID, f"{model_path.name}: not an ONNX model: {exc}") from exc
    return {
        tensor.name: next((e.value for e in tensor.external_data if e.key == "location"), "")
        for tensor in _tensors(model.graph)
        if tensor.data_location == TensorProto.EXTERNAL
    }


def _stays_inside(location: str, folder: Path) -> bool:
    if not location or "\x00" in location:
        return False
    # Either separator and a drive letter count: the same file may be opened on any platform.
    for pure in (PurePosixPath(location), PureWindowsPath(location)):
        if pure.is_absolute() or pure.drive or pure.root or ".." in pure.parts:
            return False
    return (folder / location).resolve().is_relative_to(folder)


def _tensors(graph: GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.GRAPH:
                yield from _tensors(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _tensors(sub)
