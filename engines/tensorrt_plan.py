"""The pure half of the TensorRT backend: supported versions and how each precision is
built, engine cache keys and files, optimization profiles, batch selection and buffer
planning. No tensorrt or cuda import here, so every rule is unit-tested on machines
without a GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

Precision = Literal["fp32", "fp16", "int8"]
ENGINE_SUFFIX = ".plan"
KEY_SUFFIX = ".key.json"
# JetPack 6.1/6.2 ship TensorRT 10.3, JetPack 7.0 10.13; TensorRT 11.4.1 supports JetPack 7.2.2+ only
# (docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-jetson.html).
SUPPORTED_TRT_MAJORS = (10, 11)
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})

# TensorRT data type names (str(trt.DataType.X) minus the prefix) -> numpy dtype.
TRT_DTYPES: dict[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "UINT8": np.dtype(np.uint8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
}


def trt_major(trt_version: str) -> int:
    """10 for "10.3.0.30"; ValueError for a version string that does not start with a number."""
    match = re.match(r"(\d+)\.", trt_version)
    if match is None:
        raise ValueError(f"TensorRT version must look like 10.3.0, got {trt_version!r}")
    return int(match.group(1))


@dataclass(frozen=True, slots=True)
class GraphTypes:
    """What an ONNX graph says about its own precision: Q/DQ nodes (explicit INT8) and FP16 tensors."""

    qdq: bool
    fp16: bool


def graph_types(model: onnx.ModelProto) -> GraphTypes:
    fp16 = onnx.TensorProto.FLOAT16
    casts_to_fp16 = any(
        n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute) for n in model.graph.node
    )
    return GraphTypes(
        qdq=any(n.op_type in _QDQ_OPS for n in model.graph.node),
        fp16=casts_to_fp16 or any(i.data_type == fp16 for i in model.graph.initializer),
    )


@dataclass(frozen=True, slots=True)
class BuildSettings:
    """How the network is created and configured: strongly typed (precision from the graph) or
    weakly typed with `trt.BuilderFlag.FP16` (TensorRT 10.x only)."""

    strongly_typed: bool
    fp16_flag: bool = False


def build_settings(trt_version: str, precision: Precision, graph: GraphTypes) -> BuildSettings:
    """How TensorRT `trt_version` builds a `precision` engine from a graph; ValueError naming
    the fix when it cannot.

    TensorRT 11 removed weak typing (BuilderFlag.FP16/INT8, calibrators): every network is
    strongly typed and its precision comes from the ONNX graph (Q/DQ nodes for INT8, FP16
    tensors for FP16). Explicit quantization is built strongly typed on 10.x too, with no
    precision flag ("Explicit Quantization" in the TensorRT 10 developer guide); only an
    FP16 engine from an FP32 graph needs 10.x's weakly typed FP16 flag. Sources:
    docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
    and .../inference-library/quantized-types-explicit-quantization.html.
    """
    major = trt_major(trt_version)
    if major not in SUPPORTED_TRT_MAJORS:
        raise ValueError(
            f"TensorRT {trt_version} is not supported: the agent needs TensorRT 10.x (JetPack 6.1/6.2, 7.0) or 11.x"
        )
    if graph.qdq != (precision == "int8"):
        found = "has Q/DQ nodes" if graph.qdq else "has no Q/DQ nodes"
        raise ValueError(f"the manifest says {precision} but the graph {found}: fix the manifest's precision")
    if precision == "fp32" and graph.fp16:
        raise ValueError("the manifest says fp32 but the graph has FP16 tensors: set its precision to fp16")
    if precision == "fp16" and not graph.fp16:
        if major >= 11:
            raise ValueError(
                "TensorRT 11 builds FP16 only from an FP16 graph: convert it (ModelOpt AutoCast) or use fp32 or int8"
            )
        return BuildSettings(strongly_typed=False, fp16_flag=True)
    return BuildSettings(strongly_typed=True)


@dataclass(frozen=True, slots=True)
class EngineKey:
    """Everything a serialized engine depends on: it is not portable across any of these."""

    gpu_name: str
    compute_capability: tuple[int, int]
    # Jetson Orin modules share a name and compute capability 8.7 (a cloned image boots on another one):
    # their SM count and memory tell them apart
    gpu_sms: int
    gpu_memory_mib: int
    trt_version: str
    model_sha256: str
    precision: Precision
    max_batch: int
    opt_batch: int

    def digest(self) -> str:
        """SHA-256 hex of the key's canonical JSON."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def file_name(self, model_stem: str) -> str:
        """`<model>-<precision>-b<max>-sm<cc>-trt<version>-<digest16>.plan`: readable and unique per key."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_stem)
        major, minor = self.compute_capability
        return f"{safe}-{self.precision}-b{self.max_batch}-sm{major}{minor}-trt{self.trt_version}-{self.digest()[:16]}{ENGINE_SUFFIX}"


def timing_cache_name(key: EngineKey) -> str:
    """Timing caches hold per-GPU kernel timings, shared by every model built on that GPU and TensorRT."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", key.gpu_name)
    major, minor = key.compute_capability
    return f"timing-{safe}-sm{major}{minor}-{key.gpu_sms}sms-{key.gpu_memory_mib}mib-trt{key.trt_version}.cache"


def _as_stored(key: EngineKey) -> dict:
    """The key as its sidecar JSON holds it (tuples read back as lists)."""
    return json.loads(json.dumps(asdict(key)))


def key_record(key: EngineKey, engine_bytes: bytes) -> dict:
    """The sidecar JSON stored beside an engine file: its key and the engine's own SHA-256."""
    return {"key": asdict(key), "engine_sha256": hashlib.sha256(engine_bytes).hexdigest()}


def cached_engine_problem(engine_path: Path, key: EngineKey) -> str | None:
    """Why the cached engine at `engine_path` cannot be used for `key`, or None if it can.

    A cached engine is used only when its sidecar records exactly this key and the
    engine file still hashes to the recorded SHA-256 (a truncated write or a copy
    from another box is rebuilt, never deserialized).
    """
    sidecar = engine_path.with_name(engine_path.name + KEY_SUFFIX)
    if not engine_path.is_file():
        return "no cached engine"
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable key file {sidecar.name}: {exc}"
    recorded = record.get("key", {})
    expected = _as_stored(key)
    if recorded != expected:
        differing = sorted(k for k in expected if recorded.get(k) != expected[k])
        return f"engine built for another {', '.join(differing) or 'key'}"
    if hashlib.sha256(engine_path.read_bytes()).hexdigest() != record.get("engine_sha256"):
        return "engine file does not match its recorded SHA-256"
    return None


# What a box's own engines of one model differ in only when its GPU or TensorRT changed
_BOX_FIELDS = ("gpu_name", "compute_capability", "gpu_sms", "gpu_memory_mib", "trt_version")


def superseded_engines(cache_dir: Path, key: EngineKey) -> list[Path]:
    """The cached engines (with their key files) of `key`'s model, precision and batches built for another GPU
    or TensorRT: never loadable again once `key`'s is built (a TensorRT upgrade, a cloned image), each tens of
    MB on a box's flash. Engines of other models (an OTA update's, a rollback's) are kept."""
    expected = _as_stored(key)
    stale = []
    for sidecar in sorted(cache_dir.glob(f"*{ENGINE_SUFFIX}{KEY_SUFFIX}")):
        try:
            recorded = json.loads(sidecar.read_text(encoding="utf-8")).get("key", {})
        except (OSError, ValueError, AttributeError):
            continue  # not ours to judge
        same_engine = all(recorded.get(k) == v for k, v in expected.items() if k not in _BOX_FIELDS)
        if same_engine and recorded != expected:
            stale += [sidecar.with_name(sidecar.name.removesuffix(KEY_SUFFIX)), sidecar]
    return stale


@dataclass(frozen=True, slots=True)
class Profile:
    """One optimization profile's batch range; the kernels are tuned for `opt`."""

    min_batch: int
    opt_batch: int
    max_batch: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"profile needs 1 <= min <= opt <= max, got {self}")

    def shapes(self, chw: tuple[int, int, int]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) NCHW shapes for `IOptimizationProfile.set_shape`."""
        return ((self.min_batch, *chw), (self.opt_batch, *chw), (self.max_batch, *chw))


def default_profile(max_batch: int, opt_batch: int | None = None) -> Profile:
    """Batch 1..max_batch, tuned for `opt_batch` (default, or when above max_batch: max_batch, the
    full multi-camera batch)."""
    return Profile(1, min(opt_batch or max_batch, max_batch), max_batch)


@dataclass(frozen=True, slots=True)
class BufferSpec:
    """One I/O tensor's buffers, allocated once at the profile's largest shape."""

    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.max_shape)) * self.dtype.itemsize

    def shape_for(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.max_shape[1:])

    def nbytes_for(self, batch: int) -> int:
        """Bytes to copy for a batch: only the filled rows travel over PCIe."""
        return int(np.prod(self.shape_for(batch))) * self.dtype.itemsize


def plan_buffers(
    tensors: Sequence[tuple[str, bool, str, tuple[int, ...]]], max_batch: int
) -> list[BufferSpec]:
    """(name, is_input, TensorRT dtype name, engine shape with -1 batch) per I/O tensor -> buffer specs.

    Only the batch dimension may be dynamic: any other -1 would make buffer sizes
    depend on the data, which a fixed-shape detector never needs.
    """
    specs = []
    for name, is_input, dtype_name, shape in tensors:
        if dtype_name not in TRT_DTYPES:
            raise ValueError(f"tensor {name!r}: unsupported TensorRT dtype {dtype_name}")
        if not shape or any(d < 0 for d in shape[1:]) or shape[0] not in (-1, max_batch, 1):
            raise ValueError(f"tensor {name!r}: shape {shape} must be (batch, fixed dims...)")
        specs.append(BufferSpec(name, is_input, TRT_DTYPES[dtype_name], (max_batch, *shape[1:])))
    return specs


def host_view(address: int, spec: BufferSpec) -> np.ndarray:
    """A numpy array over `spec.nbytes` bytes of (pinned) host memory at `address`, shaped `max_shape`.

    The caller keeps the memory alive for the array's lifetime.
    """
    raw = (ctypes.c_uint8 * spec.nbytes).from_address(address)
    return np.ctypeslib.as_array(raw).view(spec.dtype).reshape(spec.max_shape)
