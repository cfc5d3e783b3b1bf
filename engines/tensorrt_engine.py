"""TensorRT 10.x / 11.x on an NVIDIA GPU behind engines.base.Engine (Jetson or dGPU).

Follows the TensorRT Python samples (samples/python/common_runtime.py): tensor-name
I/O API, `execute_async_v3`, pinned host buffers and one CUDA stream through
cuda-python's `cuda.bindings.runtime` (cuda-python >= 12.6.2; the old `cuda.cudart`
module is gone from 13.0). tensorrt and cuda are imported only when an engine is
opened; the pure rules (versions and precisions, cache keys, profiles, buffer sizes)
live in engines.tensorrt_plan and are unit-tested without a GPU.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import structlog

from engines.atomic import write_atomic
from engines.base import TensorSpec
from engines.manifest import ModelError, sha256_of
from engines.tensorrt_plan import (
    KEY_SUFFIX,
    BufferSpec,
    EngineKey,
    Precision,
    Profile,
    build_settings,
    cached_engine_problem,
    default_profile,
    graph_types,
    host_view,
    key_record,
    plan_buffers,
    superseded_engines,
    timing_cache_name,
)

if TYPE_CHECKING:  # checked against the published TensorRT stubs (.ci/run); imported at open time
    import tensorrt as trt

_WORKSPACE_BYTES = 1 << 30
DEFAULT_MAX_BATCH = 8  # frames of several cameras per engine call
_log = structlog.get_logger("engines.tensorrt")


def _cuda(result: tuple) -> Any:
    """Unwrap a cuda-python (err, *values) tuple; raise RuntimeError naming the error."""
    err, *values = result
    if int(err) != 0:  # cudaSuccess
        raise RuntimeError(f"CUDA error {err!r}")
    return values[0] if len(values) == 1 else tuple(values) or None


def _native_handle(obj: Any) -> int:
    """The integer handle of a cuda-python object, for TensorRT's `stream_handle`.

    cuda-bindings 13.0 deprecated int(obj) for `cuda.bindings.utils.get_cuda_native_handle`
    (cuda-bindings 13.0.0 release notes); 12.6 (JetPack 6) has only int(obj).
    """
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


class _ErrorLog:
    """The process's TensorRT log: TensorRT treats the logger as a singleton, so every Builder
    and Runtime must get this same one ("the logger is internally considered a singleton",
    nvinfer1::ILogger), and it must be thread-safe. Errors are numbered so one build or
    deserialization can report the errors logged while it ran."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[tuple[int, str]] = deque(maxlen=64)
        self.count = 0

    def add(self, message: str) -> None:
        with self._lock:
            self.count += 1
            self._recent.append((self.count, message))

    def since(self, mark: int) -> str:
        """Errors logged after `mark` (a former `count`), joined; 'no message' if none."""
        with self._lock:
            return "; ".join(m for n, m in self._recent if n > mark) or "no message"


_ERRORS = _ErrorLog()
_LOGGER: Any = None
_LOGGER_LOCK = threading.Lock()


def _logger() -> Any:
    """The one trt.ILogger of this process (created on first use, kept for the process's life:
    it must outlive every object created through it)."""
    global _LOGGER
    import tensorrt as trt

    with _LOGGER_LOCK:
        if _LOGGER is None:

            class Logger(trt.ILogger):
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)

                def log(self, severity: Any, msg: str) -> None:
                    if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                        _ERRORS.add(msg)
                        _log.error("tensorrt", message=msg)
                    elif severity == trt.ILogger.WARNING:
                        _log.warning("tensorrt", message=msg)

            _LOGGER = Logger()
        return _LOGGER


def engine_max_batch(model_path: Path, requested: int) -> int:
    """`requested`, or 1 for a graph that does not batch: ONNX Runtime's rule (a graph saved
    with a fixed batch is batched only when a batch of 2 equals two single runs), so both
    backends batch the same graphs."""
    from engines.onnxruntime_engine import OnnxRuntimeEngine

    with OnnxRuntimeEngine(model_path, max_batch=requested, sessions=1, intra_op_threads=1) as probe:
        return requested if probe.graph_batches else 1


def engine_cache_entry(
    model_path: Path,
    precision: Precision,
    max_batch: int = DEFAULT_MAX_BATCH,
    opt_batch: int | None = None,
    cache_dir: Path | None = None,
) -> tuple[Path, EngineKey]:
    """Where this GPU's engine for the model, precision and batch is cached, and its key
    (max_batch is 1 for a graph that does not batch, see `engine_max_batch`).

    Needs TensorRT and CUDA (the key names the GPU and the TensorRT version); `edge-agent
    doctor` and `selftest` use it to check the cache without building anything.
    """
    import tensorrt as trt
    from cuda.bindings import runtime

    profile = default_profile(engine_max_batch(model_path, max_batch), opt_batch)
    device = _cuda(runtime.cudaGetDevice())
    props = _cuda(runtime.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    key = EngineKey(
        gpu_name=name,
        compute_capability=(int(props.major), int(props.minor)),
        gpu_sms=int(props.multiProcessorCount),
        gpu_memory_mib=int(props.totalGlobalMem) // 2**20,
        trt_version=trt.__version__,
        model_sha256=sha256_of(model_path),
        precision=precision,
        max_batch=profile.max_batch,
        opt_batch=profile.opt_batch,
    )
    return Path(cache_dir or model_path.parent / "trt_cache") / key.file_name(model_path.stem), key


class TensorRTEngine:
    """One ONNX graph (FP32, FP16 or Q/DQ INT8, as its manifest's `precision` says) with a
    single float32 (B, 3, H, W) input, built into a TensorRT engine cached under `cache_dir`
    and run on one CUDA stream.

    Batches of 1..max_batch frames (frames of several cameras) run through one
    optimization profile tuned for `opt_batch`; a graph that does not batch runs at 1.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int

    def __init__(
        self,
        model_path: Path,
        *,
        precision: Precision,
        max_batch: int = DEFAULT_MAX_BATCH,
        opt_batch: int | None = None,
        cache_dir: Path | None = None,
        workspace_bytes: int = _WORKSPACE_BYTES,
    ) -> None:
        # Everything close() frees exists from the start, so a failure halfway leaks nothing.
        self._stream: Any = None
        self._stream_handle = 0  # the stream's integer handle for execute_async_v3, found once at open
        self._host: dict[str, tuple[int, np.ndarray]] = {}
        self._device: dict[str, int] = {}
        self._context: trt.IExecutionContext | None = None
        self._engine: trt.ICudaEngine | None = None
        self._runtime: trt.Runtime | None = None
        from cuda.bindings import runtime

        self._cudart = runtime
        self._path = Path(model_path)
        try:
            engine_path, key = engine_cache_entry(self._path, precision, max_batch, opt_batch, cache_dir)
            self.max_batch = key.max_batch
            problem = cached_engine_problem(engine_path, key)
            if problem is None:
                try:
                    self._open(engine_path.read_bytes())
                    return
                except ModelError as exc:
                    # Its key matched, yet this TensorRT cannot load it (a patch update under the same
                    # version string, a damaged file rewritten with its hash): rebuilt once, never left
                    # to fail every start until systemd gives up.
                    _log.warning("engine_cache_rejected", engine=str(engine_path), error=str(exc))
                    self.close()  # whatever the failed open made
                    problem = "the cached engine does not load"
            _log.info("engine_build", model=str(self._path), precision=precision, reason=problem)
            timing = engine_path.parent / timing_cache_name(key)
            plan = self._build(key, Profile(1, key.opt_batch, key.max_batch), timing, workspace_bytes)
            write_atomic(engine_path, plan)
            write_atomic(engine_path.with_name(engine_path.name + KEY_SUFFIX), _json_bytes(key_record(key, plan)))
            for stale in superseded_engines(engine_path.parent, key):
                stale.unlink(missing_ok=True)
                _log.info("engine_superseded_removed", path=str(stale))
            self._open(plan)
        except BaseException:
            self.close()
            raise

    def _build(self, key: EngineKey, profile: Profile, timing_path: Path, workspace_bytes: int) -> bytes:
        import tensorrt as trt

        logger = _logger()
        model = onnx.load_model(str(self._path))
        try:
            settings = build_settings(key.trt_version, key.precision, graph_types(model))
        except ValueError as exc:
            raise ModelError(f"{self._path}: {exc}") from exc
        mark = _ERRORS.count
        builder = trt.Builder(logger)
        # STRONGLY_TYPED: opt-in on 10.x, accepted and ignored on 11.x where every network is strongly
        # typed (NetworkDefinitionCreationFlag in the TensorRT 11.0 Python API reference).
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if settings.strongly_typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(_onnx_for_batch(model, key.max_batch)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"{self._path}: TensorRT cannot parse the ONNX graph: {errors}")
        if network.num_inputs != 1:
            raise ModelError(f"{self._path}: expected one image input, graph has {network.num_inputs}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
        if settings.fp16_flag:
            config.set_flag(trt.BuilderFlag.FP16)
        config.set_timing_cache(_timing_cache(config, timing_path), ignore_mismatch=False)
        image = network.get_input(0)
        if -1 in image.shape[:]:  # a fixed-shape graph needs no profile
            shapes = builder.create_optimization_profile()
            shapes.set_shape(image.name, *(trt.Dims(list(s)) for s in profile.shapes(image.shape[1:])))
            config.add_optimization_profile(shapes)
        plan = builder.build_serialized_network(network, config)
        # Success is the returned plan: errors TensorRT logs and recovers from do not reject it.
        if plan is None:
            raise ModelError(f"{self._path}: TensorRT build failed: {_ERRORS.since(mark)}")
        write_atomic(timing_path, bytes(config.get_timing_cache().serialize()))
        return bytes(plan)

    def _open(self, plan: bytes) -> None:
        import tensorrt as trt

        cudart = self._cudart
        mark = _ERRORS.count
        self._runtime = runtime = trt.Runtime(_logger())
        self._engine = engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise ModelError(f"{self._path}: cannot deserialize the engine: {_ERRORS.since(mark)}")
        self._context = context = engine.create_execution_context()
        if context is None:
            raise ModelError(f"{self._path}: cannot create an execution context: {_ERRORS.since(mark)}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        tensors: list[tuple[str, bool, str, tuple[int, ...]]] = [
            (n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT, engine.get_tensor_dtype(n).name,
             engine.get_tensor_shape(n)[:])
            for n in names
        ]  # fmt: skip
        try:
            self._buffers: list[BufferSpec] = plan_buffers(tensors, self.max_batch)
        except ValueError as exc:
            raise ModelError(f"{self._path}: {exc}") from exc
        self.inputs = tuple(TensorSpec(b.name, (-1, *b.max_shape[1:]), b.dtype) for b in self._buffers if b.is_input)
        self.outputs = tuple(TensorSpec(b.name, (-1, *b.max_shape[1:]), b.dtype) for b in self._buffers if not b.is_input)
        if len(self.inputs) != 1:
            raise ModelError(f"{self._path}: expected one image input, engine has {[s.name for s in self.inputs]}")
        self._stream = _cuda(cudart.cudaStreamCreate())
        self._stream_handle = _native_handle(self._stream)
        for spec in self._buffers:
            address = _cuda(cudart.cudaMallocHost(spec.nbytes))
            self._host[spec.name] = (address, host_view(address, spec))
            self._device[spec.name] = _cuda(cudart.cudaMalloc(spec.nbytes))
            context.set_tensor_address(spec.name, int(self._device[spec.name]))

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """batch: float32 (B, 3, H, W), 1 <= B <= max_batch -> {output name: (B, ...) copies}."""
        cudart, context = self._cudart, self._context
        if context is None:
            raise RuntimeError(f"{self._path}: the engine is closed")
        image = self.inputs[0]
        if batch.dtype != image.dtype or batch.shape[1:] != image.shape[1:] or not 1 <= len(batch) <= self.max_batch:
            raise ValueError(f"expected {image.dtype} (1..{self.max_batch}, {image.shape[1:]}), got {batch.dtype} {batch.shape}")
        n = len(batch)
        mark = _ERRORS.count
        if not context.set_input_shape(image.name, batch.shape):
            raise RuntimeError(f"TensorRT refused input shape {batch.shape}: {_ERRORS.since(mark)}")
        to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._host[image.name][1][:n] = batch
        inputs = [b for b in self._buffers if b.is_input]
        outputs = [b for b in self._buffers if not b.is_input]
        for spec in inputs:
            _cuda(cudart.cudaMemcpyAsync(self._device[spec.name], self._host[spec.name][0], spec.nbytes_for(n), to_device, self._stream))
        if not context.execute_async_v3(self._stream_handle):
            raise RuntimeError(f"TensorRT execution failed: {_ERRORS.since(mark)}")
        for spec in outputs:
            _cuda(cudart.cudaMemcpyAsync(self._host[spec.name][0], self._device[spec.name], spec.nbytes_for(n), to_host, self._stream))
        _cuda(cudart.cudaStreamSynchronize(self._stream))
        # Copies: the pinned buffers are overwritten by the next batch.
        return {spec.name: self._host[spec.name][1][:n].copy() for spec in outputs}

    def close(self) -> None:
        """Free buffers, stream, context, engine and runtime; safe after a failed open and twice."""
        if self._host or self._device or self._stream is not None:
            cudart = self._cudart
            for address, _ in self._host.values():
                cudart.cudaFreeHost(address)
            for address in self._device.values():
                cudart.cudaFree(address)
            if self._stream is not None:
                cudart.cudaStreamDestroy(self._stream)
        self._host, self._device, self._stream = {}, {}, None
        self._context = self._engine = self._runtime = None  # released in dependency order

    def __enter__(self) -> TensorRTEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timing_cache(config: trt.IBuilderConfig, path: Path) -> trt.ITimingCache:
    """The timing cache saved at `path`, or a new one when there is none or TensorRT refuses it (a damaged
    file would otherwise fail every build until deleted by hand; the build rewrites it)."""
    if path.is_file():
        try:
            cache = config.create_timing_cache(path.read_bytes())
            if cache is not None:
                return cache
            error = "TensorRT made no cache of it"
        except (RuntimeError, TypeError, OSError) as exc:
            error = str(exc)
        _log.warning("timing_cache_rejected", path=str(path), error=error)
    return config.create_timing_cache(b"")


def _onnx_for_batch(model: onnx.ModelProto, max_batch: int) -> bytes:
    """The graph serialized for the parser: with a symbolic batch dimension when it batches."""
    # The ONNX Runtime backend's graph edits, so both backends see the same graph.
    from engines.onnxruntime_engine import _with_dynamic_batch, _without_initializer_inputs

    model = _without_initializer_inputs(model)
    return (_with_dynamic_batch(model) if max_batch > 1 else model).SerializeToString()


def _json_bytes(record: dict) -> bytes:
    return json.dumps(record, indent=2, sort_keys=True).encode()
