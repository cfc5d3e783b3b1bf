"""The pure half of the TensorRT backend: engine cache keys and files, optimization
profiles, batch selection and buffer planning. No tensorrt or cuda import here,
so every rule is unit-tested on machines without a GPU.
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

Precision = Literal["fp32", "fp16", "int8"]
ENGINE_SUFFIX = ".plan"
KEY_SUFFIX = ".key.json"

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


@dataclass(frozen=True, slots=True)
class EngineKey:
    """Everything a serialized engine depends on: it is not portable across any of these."""

    gpu_name: str
    compute_capability: tuple[int, int]
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


def timing_cache_name(gpu_name: str, compute_capability: tuple[int, int], trt_version: str) -> str:
    """Timing caches hold per-GPU kernel timings, shared by every model built on that GPU and TensorRT."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", gpu_name)
    return f"timing-{safe}-sm{compute_capability[0]}{compute_capability[1]}-trt{trt_version}.cache"


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
    expected = json.loads(json.dumps(asdict(key)))  # tuples -> lists, as stored
    if recorded != expected:
        differing = sorted(k for k in expected if recorded.get(k) != expected[k])
        return f"engine built for another {', '.join(differing) or 'key'}"
    if hashlib.sha256(engine_path.read_bytes()).hexdigest() != record.get("engine_sha256"):
        return "engine file does not match its recorded SHA-256"
    return None


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
    """Batch 1..max_batch, tuned for `opt_batch` (default: max_batch, the full multi-camera batch)."""
    return Profile(1, opt_batch or max_batch, max_batch)


def select_profile(profiles: Sequence[Profile], batch: int) -> int:
    """Index of the profile to run `batch` frames with: among those whose range holds it,
    the one whose `opt` is nearest (its kernels were tuned closest); ties to the first."""
    fitting = [i for i, p in enumerate(profiles) if p.min_batch <= batch <= p.max_batch]
    if not fitting:
        ranges = ", ".join(f"{p.min_batch}..{p.max_batch}" for p in profiles)
        raise ValueError(f"no optimization profile holds batch {batch} (profiles: {ranges})")
    return min(fitting, key=lambda i: abs(profiles[i].opt_batch - batch))


def split_batches(frames: int, max_batch: int) -> list[int]:
    """Batch sizes that run `frames` frames in as few engine calls as possible, sizes as
    even as possible (9 frames at max 8 -> [5, 4], not [8, 1]: two half-full calls
    cost about the same as one full one plus one nearly empty)."""
    if frames <= 0:
        return []
    calls = -(-frames // max_batch)
    base, extra = divmod(frames, calls)
    return [base + 1] * extra + [base] * (calls - extra)


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
    return np.frombuffer(raw, dtype=spec.dtype).reshape(spec.max_shape)


def calibration_version_number(trt_version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION integer of "major.minor.patch", as written in calibration
    cache headers: major*1000 + minor*100 + patch before TensorRT 10 (8.6.2 -> 8602),
    major*10000 + minor*100 + patch from 10 on (10.3.0 -> 100300)."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(?:\.\d+)*", trt_version)
    if match is None:
        raise ValueError(f"TensorRT version must look like 8.6.2, got {trt_version!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch
