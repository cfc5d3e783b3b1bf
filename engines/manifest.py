"""Model manifests: every fact about a model file lives in its JSON manifest, never in code.

A manifest is checked four times: its own fields at load (`load_manifest`), the
file's bytes against its SHA-256 (`verify_sha256`), the input the ONNX file
declares against its input size, read without a runtime (`check_graph_input`,
so a config check catches it), and the opened graph's tensors against its
input/outputs (`check_engine_tensors`). Any failure raises
`ModelError` naming the file and what disagrees.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from engines.base import TensorSpec

_HASH_CHUNK_BYTES = 1 << 20

PositiveInt = Annotated[int, Field(gt=0)]


class ModelError(Exception):
    """A model file or manifest that cannot be used: missing, corrupt, not ONNX, or disagreeing with its manifest."""


class InputManifest(BaseModel):
    """How images become the graph's single float32 (B, 3, H, W) input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Name of the graph's input tensor.")
    size_wh: tuple[PositiveInt, PositiveInt] = Field(description="Input width and height in pixels.")
    channel_order: Literal["bgr", "rgb"] = Field(description="Channel order the model was trained on.")
    mean: tuple[float, float, float] = Field(
        description="Per-channel value subtracted from 0..255 pixels, in `channel_order`."
    )
    std: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = Field(
        description="Per-channel divisor applied after `mean`, in `channel_order`."
    )
    letterbox: Literal["top_left"] = Field(
        description="Where the aspect-preserving resize is placed in the input: the top-left corner."
    )
    pad_value: int = Field(ge=0, le=255, description="Pixel value (0..255) of the letterbox padding.")
    graph_size_wh: tuple[PositiveInt, PositiveInt] | None = Field(
        default=None,
        description="Input width and height the graph file was saved with, when `size_wh` differs: the "
        "graph's input is set to `size_wh` at load (ONNX Runtime; for graphs whose other shapes follow "
        "their input, as YOLOX's), so one file serves several input sizes. Absent: the graph's own size.",
    )


class ModelManifest(BaseModel):
    """A detector model file and everything needed to run and decode it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # the folder of the file it was loaded from: the model file may sit beside it
    _folder: Path | None = PrivateAttr(None)

    name: str = Field(min_length=1, description="Model name, unique within a device.")
    file: str = Field(
        pattern=r"^[A-Za-z0-9._-]+$",
        description="File name of the ONNX graph inside the models directory (a bare name, no path).",
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the model file, lower-case hex.")
    size_bytes: PositiveInt = Field(description="Exact size of the model file in bytes; caps downloads.")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Upstream download URL, or null when the file only comes from a local copy or an OTA update.",
    )
    license: str = Field(description="License of the model weights (SPDX identifier).")
    decoder: str = Field(description="Output decoder family, a name in engines.decoders (e.g. 'yolox').")
    precision: Literal["fp32", "fp16", "int8"] = Field(description="Numeric precision of the graph's weights.")
    input: InputManifest = Field(description="The graph's input tensor and its preprocessing.")
    outputs: dict[str, tuple[PositiveInt, ...]] = Field(
        min_length=1, description="Graph output names -> shape without the batch dimension."
    )
    strides: tuple[PositiveInt, ...] = Field(
        min_length=1, description="Feature-map strides in input pixels, in the order of the output rows."
    )
    classes: list[str] = Field(min_length=1, description="Class names, indexed by the model's class id.")
    class_map: dict[str, str] = Field(
        default_factory=dict,
        description="Editable mapping from class name to analytic category (person, vehicle, bag, weapon...); "
        "unmapped classes belong to no category.",
    )
    notes: str = Field(default="", description="Free text for humans: provenance, caveats.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelManifest:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes: names must be unique")
        unknown = sorted(set(self.class_map) - set(self.classes))
        if unknown:
            raise ValueError(f"class_map: unknown class names {unknown}")
        width, height = self.input.size_wh
        if any(width % s or height % s for s in self.strides):
            raise ValueError(f"input.size_wh {self.input.size_wh} is not a multiple of every stride {self.strides}")
        return self

    def class_ids(self, class_names: Sequence[str]) -> np.ndarray:
        """int32 (K,) ids of `class_names`; raises ModelError naming any name the model does not have."""
        unknown = [n for n in class_names if n not in self.classes]
        if unknown:
            raise ModelError(f"model {self.name!r} has no classes {unknown}")
        return np.array([self.classes.index(n) for n in class_names], np.int32)


def load_manifest(path: Path) -> ModelManifest:
    """Parse and validate a manifest; errors name the file and every bad field."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read manifest: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        if Path(path).suffix.lower() == ".onnx" or data.lstrip()[:1] not in (b"{", b"["):
            raise ModelError(
                f"{path} is a model file, not a manifest: give the manifest JSON that names it "
                f"(e.g. models/yolox_nano.json; see the README's Models section)"
            ) from exc
        raise ModelError(f"{path}: cannot read manifest: not valid JSON: {exc}") from exc
    try:
        manifest = ModelManifest.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(manifest)'}: {err['msg']}" for err in exc.errors()
        )
        raise ModelError(f"{path}: invalid manifest: {fields}") from exc
    manifest._folder = Path(path).resolve().parent
    return manifest


def resolve_model_file(manifest: ModelManifest, models_dir: Path) -> Path:
    """Path of the manifest's model file: in `models_dir`, else beside the manifest file it
    was loaded from (where `edge-agent calibrate` and OTA slots put theirs); ModelError if
    it is in neither."""
    folders = [Path(models_dir)] + ([manifest._folder] if manifest._folder is not None else [])
    for folder in folders:
        if (folder / manifest.file).is_file():
            return folder / manifest.file
    raise ModelError(
        f"model file {manifest.file!r} of {manifest.name!r} not found in {' or '.join(map(str, folders))}: "
        "point the models folder (the config's models_dir or EDGE_AGENT_MODELS_DIR; calibrate's and provision's "
        "--models-dir) at the folder holding it, "
        "or put it there with `edge-agent models fetch`"
    )


def sha256_of(path: Path) -> str:
    """Lower-case hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> str:
    """Return the file's SHA-256 if it equals `expected`; ModelError naming both otherwise."""
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(
            f"{path}: sha256 mismatch: expected {expected}, file has {actual}: the file is damaged (a copy cut short) "
            "or another model's; put the right one there (`edge-agent models fetch` with the model's manifest)"
        )
    return actual


def check_graph_input(manifest: ModelManifest, model_path: Path) -> None:
    """Refuse an ONNX file whose declared input is not (B, 3, H, W) at the manifest's graph size (its
    `graph_size_wh`, else `size_wh`), read from the file alone (no runtime, no external weights); a
    dimension the file leaves symbolic is not checked. ModelError saying which field to correct."""
    import onnx  # only when a config is checked: the agent's settings load no ML runtime

    try:
        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception as e:  # onnx raises DecodeError, ValueError, OSError... on a file that is not ONNX
        raise ModelError(f"{model_path}: not an ONNX model ({e}): put the right file there") from e
    initializers = {t.name for t in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in initializers}
    expected_wh = manifest.input.graph_size_wh or manifest.input.size_wh
    field = "input.graph_size_wh" if manifest.input.graph_size_wh else "input.size_wh"
    if manifest.input.name not in inputs:
        raise ModelError(
            f"{model_path}: the graph's inputs are {sorted(inputs)}, manifest {manifest.name!r} says "
            f"input.name {manifest.input.name!r}: correct input.name in the manifest"
        )
    dims = inputs[manifest.input.name].type.tensor_type.shape.dim
    declared = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    wanted = (3, expected_wh[1], expected_wh[0])
    if len(declared) != 4 or any(d is not None and d != w for d, w in zip(declared[1:], wanted)):
        shown = ", ".join("?" if d is None else str(d) for d in declared)
        raise ModelError(
            f"{model_path}: the graph's input {manifest.input.name!r} is ({shown}), manifest {manifest.name!r} says "
            f"(B, 3, {wanted[1]}, {wanted[2]}) from {field} {list(expected_wh)}: correct {field} in the manifest "
            "(width, height of the graph's input)"
        )


def check_engine_tensors(
    manifest: ModelManifest, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], model_path: Path
) -> None:
    """Refuse a graph whose tensors disagree with the manifest.

    Expects one float32 input (B, 3, H, W) named `manifest.input.name` with H, W
    from `size_wh`, and exactly the manifest's outputs with shapes
    (B, *manifest.outputs[name]). B may be dynamic (-1).
    """
    problems: list[str] = []
    width, height = manifest.input.size_wh
    expected_inputs = {manifest.input.name: (3, height, width)}
    problems += _compare(inputs, expected_inputs, "input")
    problems += _compare(outputs, manifest.outputs, "output")
    if problems:
        raise ModelError(f"{model_path}: graph disagrees with manifest {manifest.name!r}: " + "; ".join(problems))


def _compare(specs: Sequence[TensorSpec], expected: dict[str, tuple[int, ...]], kind: str) -> list[str]:
    actual = {s.name: s for s in specs}
    if set(actual) != set(expected):
        return [f"{kind} names {sorted(actual)} != manifest {sorted(expected)}"]
    problems = []
    for name, shape in expected.items():
        spec = actual[name]
        if spec.shape[1:] != tuple(shape) or len(spec.shape) != len(shape) + 1:
            problems.append(f"{kind} {name!r} shape {spec.shape} != manifest (B, {', '.join(map(str, shape))})")
        if spec.dtype != np.float32:
            problems.append(f"{kind} {name!r} dtype {spec.dtype} != float32")
    return problems
