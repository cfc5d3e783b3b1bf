"""TensorRT 10 on an NVIDIA GPU behind engines.base.Engine (Jetson or dGPU).

Follows the TensorRT 10 Python samples (common_runtime.py): tensor-name I/O
API, `execute_async_v3`, pinned host buffers and one CUDA stream through
cuda-python. tensorrt and cuda are imported only when an engine is opened;
the pure rules (cache keys, profiles, batch split, buffer sizes) live in
engines.tensorrt_plan and are unit-tested without a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from engines.atomic import write_atomic
from engines.base import TensorSpec
from engines.manifest import ModelError, sha256_of
from engines.tensorrt_plan import (
    KEY_SUFFIX,
    BufferSpec,
    EngineKey,
    Precision,
    Profile,
    cached_engine_problem,
    default_profile,
    host_view,
    key_record,
    plan_buffers,
    timing_cache_name,
)

_WORKSPACE_BYTES = 1 << 30
DEFAULT_MAX_BATCH = 8  # frames of several cameras per engine call


def _cudart() -> Any:
    """cuda-python's runtime module: `cuda.bindings.runtime` (cuda-python >= 12.6) or `cuda.cudart` (older)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def _cuda(result: tuple) -> Any:
    """Unwrap a cuda-python (err, *values) tuple; raise RuntimeError naming the error."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err!r}")
    return values[0] if len(values) == 1 else tuple(values) or None


def _logger() -> Any:
    """A trt.ILogger that keeps every error so build and deserialize failures can be reported."""
    import tensorrt as trt

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.errors.append(msg)

    return CapturingLogger()


def engine_cache_entry(
    model_path: Path, precision: Precision, profile: Profile, cache_dir: Path | None = None
) -> tuple[Path, EngineKey]:
    """Where this GPU's engine for the model, precision and profile is cached, and its key.

    Needs TensorRT and CUDA (the key names the GPU and the TensorRT version); `edge-agent
    doctor` uses it to check the cache without building anything.
    """
    import tensorrt as trt

    cudart = _cudart()
    device = _cuda(cudart.cudaGetDevice())
    props = _cuda(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    key = EngineKey(
        gpu_name=name,
        compute_capability=(int(props.major), int(props.minor)),
        trt_version=trt.__version__,
        model_sha256=sha256_of(model_path),
        precision=precision,
        max_batch=profile.max_batch,
        opt_batch=profile.opt_batch,
    )
    return Path(cache_dir or model_path.parent / "trt_cache") / key.file_name(model_path.stem), key


class TensorRTEngine:
    """One ONNX graph (FP32 or QDQ INT8) with a single float32 (B, 3, H, W) input, built into
    a TensorRT engine cached under `cache_dir` and run on one CUDA stream.

    Batches of 1..max_batch frames (frames of several cameras) run through one
    optimization profile tuned for `opt_batch`.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        opt_batch: int | None = None,
        precision: Precision = "int8",
        cache_dir: Path | None = None,
        workspace_bytes: int = _WORKSPACE_BYTES,
    ) -> None:
        import tensorrt as trt

        self._trt, self._cudart = trt, _cudart()
        self._path = Path(model_path)
        self._logger = _logger()
        self._profile = default_profile(max_batch, opt_batch)
        self.max_batch = max_batch
        engine_path, key = engine_cache_entry(self._path, precision, self._profile, cache_dir)
        problem = cached_engine_problem(engine_path, key)
        if problem is None:
            plan = engine_path.read_bytes()
        else:
            plan = self._build(precision, engine_path.parent / timing_cache_name(key.gpu_name, key.compute_capability, key.trt_version), workspace_bytes)
            write_atomic(engine_path, plan)
            write_atomic(engine_path.with_name(engine_path.name + KEY_SUFFIX), _json_bytes(key_record(key, plan)))
        self._open(plan)

    def _build(self, precision: Precision, timing_path: Path, workspace_bytes: int) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(_dynamic_batch_onnx(self._path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ModelError(f"{self._path}: TensorRT cannot parse the ONNX graph: {'; '.join(errors)}")
        if network.num_inputs != 1:
            raise ModelError(f"{self._path}: expected one image input, graph has {network.num_inputs}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
        # INT8 where the QDQ graph says so; FP16 lets the float head and unquantized layers avoid FP32 kernels.
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
        image = network.get_input(0)
        profile = builder.create_optimization_profile()
        profile.set_shape(image.name, *self._profile.shapes(tuple(image.shape)[1:]))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ModelError(f"{self._path}: TensorRT build failed: {'; '.join(self._logger.errors) or 'no message'}")
        write_atomic(timing_path, bytes(config.get_timing_cache().serialize()))
        return bytes(plan)

    def _open(self, plan: bytes) -> None:
        trt, cudart = self._trt, self._cudart
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None or self._logger.errors:
            raise ModelError(f"{self._path}: cannot deserialize the engine: {'; '.join(self._logger.errors) or 'null engine'}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ModelError(f"{self._path}: cannot create an execution context: {'; '.join(self._logger.errors)}")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        tensors = [
            (n, self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT, self._engine.get_tensor_dtype(n).name,
             tuple(self._engine.get_tensor_shape(n)))
            for n in names
        ]
        try:
            self._buffers: list[BufferSpec] = plan_buffers(tensors, self.max_batch)
        except ValueError as exc:
            raise ModelError(f"{self._path}: {exc}") from exc
        self.inputs = tuple(TensorSpec(b.name, (-1, *b.max_shape[1:]), b.dtype) for b in self._buffers if b.is_input)
        self.outputs = tuple(TensorSpec(b.name, (-1, *b.max_shape[1:]), b.dtype) for b in self._buffers if not b.is_input)
        if len(self.inputs) != 1:
            raise ModelError(f"{self._path}: expected one image input, engine has {[s.name for s in self.inputs]}")
        self._stream = _cuda(cudart.cudaStreamCreate())
        self._host: dict[str, tuple[int, np.ndarray]] = {}
        self._device: dict[str, int] = {}
        for spec in self._buffers:
            address = _cuda(cudart.cudaMallocHost(spec.nbytes))
            self._host[spec.name] = (address, host_view(address, spec))
            self._device[spec.name] = _cuda(cudart.cudaMalloc(spec.nbytes))
            self._context.set_tensor_address(spec.name, int(self._device[spec.name]))

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """batch: float32 (B, 3, H, W), 1 <= B <= max_batch -> {output name: (B, ...) copies}."""
        cudart = self._cudart
        image = self.inputs[0]
        if batch.dtype != image.dtype or batch.shape[1:] != image.shape[1:] or not 1 <= len(batch) <= self.max_batch:
            raise ValueError(f"expected {image.dtype} (1..{self.max_batch}, {image.shape[1:]}), got {batch.dtype} {batch.shape}")
        n = len(batch)
        if not self._context.set_input_shape(image.name, batch.shape):
            raise RuntimeError(f"TensorRT refused input shape {batch.shape}: {'; '.join(self._logger.errors)}")
        to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._host[image.name][1][:n] = batch
        inputs = [b for b in self._buffers if b.is_input]
        outputs = [b for b in self._buffers if not b.is_input]
        for spec in inputs:
            _cuda(cudart.cudaMemcpyAsync(self._device[spec.name], self._host[spec.name][0], spec.nbytes_for(n), to_device, self._stream))
        if not self._context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"TensorRT execution failed: {'; '.join(self._logger.errors)}")
        for spec in outputs:
            _cuda(cudart.cudaMemcpyAsync(self._host[spec.name][0], self._device[spec.name], spec.nbytes_for(n), to_host, self._stream))
        _cuda(cudart.cudaStreamSynchronize(self._stream))
        # Copies: the pinned buffers are overwritten by the next batch.
        return {spec.name: self._host[spec.name][1][:n].copy() for spec in outputs}

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None or not hasattr(self, "_stream"):
            return
        for address, _ in self._host.values():
            cudart.cudaFreeHost(address)
        for address in self._device.values():
            cudart.cudaFree(address)
        cudart.cudaStreamDestroy(self._stream)
        self._host, self._device = {}, {}
        del self._stream
        self._context = self._engine = self._runtime = None

    def __enter__(self) -> TensorRTEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dynamic_batch_onnx(path: Path) -> bytes:
    """The ONNX graph with a symbolic batch dimension, serialized for the parser."""
    import onnx

    # The ORT backend's graph edits, so both backends see the same graph.
    from engines.onnxruntime_engine import _with_dynamic_batch, _without_initializer_inputs

    return _with_dynamic_batch(_without_initializer_inputs(onnx.load_model(str(path)))).SerializeToString()


def _json_bytes(record: dict) -> bytes:
    return json.dumps(record, indent=2, sort_keys=True).encode()
