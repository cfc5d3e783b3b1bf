"""The TensorRT backend's own bookkeeping, against FAKE `tensorrt` and `cuda.bindings.runtime`
modules: TensorRT cannot be installed on any machine here (no GPU; its PyPI wheels are
stubs), so these fakes stand in for it, and they check only what this project's code does
around TensorRT: the precision it asks for, one logger per process, that a build counts
by its result and not by logged errors, and that a failure halfway through opening frees
everything. What TensorRT itself does runs in test_tensorrt_engine.py, on a real GPU only.
"""

from __future__ import annotations

import ctypes
import json
import sys
import types

import numpy as np
import pytest

from agent.settings.config import load_config
from agent.tools.selftest import check_models
from engines import tensorrt_engine
from engines.detector import Detector
from engines.manifest import ModelError
from engines.tensorrt_plan import cached_engine_problem, key_record, timing_cache_name
from tests.conftest import REPO


class FakeCuda:
    """cuda.bindings.runtime's calls the backend makes; host memory is real (numpy views it)."""

    def __init__(self, fail_malloc_at: int | None = None) -> None:
        self.live: dict[str, set[int]] = {"host": set(), "device": set(), "stream": set()}
        self._buffers: dict[int, ctypes.Array] = {}
        self._next, self._mallocs, self._fail_at = 1, 0, fail_malloc_at
        self.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def _new(self, kind: str) -> int:
        self._next += 1
        self.live[kind].add(self._next)
        return self._next

    def cudaGetDevice(self):
        return 0, 0

    def cudaGetDeviceProperties(self, device):
        return 0, types.SimpleNamespace(name=b"Fake Orin\x00", major=8, minor=7, multiProcessorCount=8,
                                        totalGlobalMem=7620 * 2**20)

    def cudaStreamCreate(self):
        return 0, self._new("stream")

    def cudaStreamDestroy(self, stream):
        self.live["stream"].remove(stream)
        return (0,)

    def cudaMallocHost(self, size):
        buffer = (ctypes.c_uint8 * size)()
        self._buffers[ctypes.addressof(buffer)] = buffer
        self.live["host"].add(ctypes.addressof(buffer))
        return 0, ctypes.addressof(buffer)

    def cudaFreeHost(self, address):
        self.live["host"].remove(address)
        return (0,)

    def cudaMalloc(self, size):
        self._mallocs += 1
        if self._mallocs == self._fail_at:
            return 2, 0  # cudaErrorMemoryAllocation
        return 0, self._new("device")

    def cudaFree(self, address):
        self.live["device"].remove(address)
        return (0,)


def fake_tensorrt(version: str, log_error_during_build: str | None = None, build_fails: bool = False):
    """A `tensorrt` module with the calls the backend makes; records what it was asked."""
    calls: dict[str, list] = {"loggers": [], "network_flags": [], "builder_flags": [], "deserialized": [], "timing_caches": []}

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO = "internal", "error", "warning", "info"

        def __init__(self) -> None:
            pass

    class Network:
        num_inputs = 1

        def get_input(self, i):
            return types.SimpleNamespace(name="images", shape=(-1, 3, 416, 416))

    class Config:
        def set_memory_pool_limit(self, *args): ...
        def set_flag(self, flag):
            calls["builder_flags"].append(flag)
        def create_timing_cache(self, data):
            calls["timing_caches"].append(data)
            return None if data == b"damaged-timing" else b"timing"
        def set_timing_cache(self, cache, ignore_mismatch): ...
        def add_optimization_profile(self, profile): ...
        def get_timing_cache(self):
            return types.SimpleNamespace(serialize=lambda: b"timing")

    class Builder:
        def __init__(self, logger) -> None:
            calls["loggers"].append(logger)
            self._logger = logger

        def create_network(self, flags):
            calls["network_flags"].append(flags)
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return types.SimpleNamespace(set_shape=lambda *args: None)

        def build_serialized_network(self, network, config):
            if log_error_during_build:
                self._logger.log(ILogger.ERROR, log_error_during_build)
            return None if build_fails else b"serialized-engine"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger) -> None:
            calls["loggers"].append(logger)

        def parse(self, data):
            return True

    shapes = {"images": (-1, 3, 416, 416), "output": (-1, 3549, 85)}
    engine = types.SimpleNamespace(
        num_io_tensors=2,
        get_tensor_name=lambda i: list(shapes)[i],
        get_tensor_mode=lambda n: "input" if n == "images" else "output",
        get_tensor_dtype=lambda n: types.SimpleNamespace(name="FLOAT"),
        get_tensor_shape=lambda n: shapes[n],
        create_execution_context=lambda: types.SimpleNamespace(set_tensor_address=lambda name, address: None),
    )

    class Runtime:
        def __init__(self, logger) -> None:
            calls["loggers"].append(logger)

        def deserialize_cuda_engine(self, plan):
            calls["deserialized"].append(plan)
            return None if plan == b"stale-engine" else engine

    module = types.SimpleNamespace(
        __version__=version, ILogger=ILogger, Builder=Builder, OnnxParser=OnnxParser, Runtime=Runtime,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1), Dims=tuple,
        BuilderFlag=types.SimpleNamespace(FP16="FP16"), MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
        TensorIOMode=types.SimpleNamespace(INPUT="input"),
    )
    return module, calls


@pytest.fixture
def fakes(monkeypatch):
    """Install fake tensorrt / cuda modules; returns a function (version, **options) -> (calls, cuda)."""
    monkeypatch.setattr(tensorrt_engine, "_LOGGER", None)  # a fresh process as far as the logger goes

    def install(version: str = "10.3.0", fail_malloc_at: int | None = None, **options):
        trt, calls = fake_tensorrt(version, **options)
        cuda = FakeCuda(fail_malloc_at)
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = cuda
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cuda)
        return calls, cuda

    return install


def test_precision_comes_from_the_manifest_and_the_logger_is_one(fakes, manifests_dir, models_dir, tmp_path):
    calls, cuda = fakes()
    for _ in range(2):  # built, then loaded from the cache
        with Detector.open(manifests_dir / "yolox_nano.json", models_dir, backend="tensorrt", cache_dir=tmp_path):
            pass
    assert calls["network_flags"] == [1 << 1]  # FP32 manifest: strongly typed, built once
    assert calls["builder_flags"] == []
    assert len({id(logger) for logger in calls["loggers"]}) == 1 and len(calls["loggers"]) == 4
    assert [p.name.split("-")[1] for p in tmp_path.glob("*.plan")] == ["fp32"]  # keyed as doctor looks it up
    assert all(not live for live in cuda.live.values())


def test_fp16_on_tensorrt_10_is_the_weakly_typed_flag(fakes, models_dir, tmp_path):
    calls, _ = fakes("10.3.0")
    with tensorrt_engine.TensorRTEngine(models_dir / "yolox_nano.onnx", precision="fp16", cache_dir=tmp_path):
        pass
    assert calls["network_flags"] == [0] and calls["builder_flags"] == ["FP16"]


def test_fp32_graph_labelled_int8_is_refused(fakes, models_dir, tmp_path):
    fakes("11.4.1")
    with pytest.raises(ModelError, match="says int8 but the graph has no Q/DQ nodes"):
        tensorrt_engine.TensorRTEngine(models_dir / "yolox_nano.onnx", precision="int8", cache_dir=tmp_path)


def test_errors_logged_during_a_successful_build_keep_the_engine(fakes, models_dir, tmp_path):
    fakes(log_error_during_build="tactic failed, trying the next one")
    with tensorrt_engine.TensorRTEngine(models_dir / "yolox_nano.onnx", precision="fp32", cache_dir=tmp_path) as engine:
        assert engine.max_batch == 8 and engine.outputs[0].shape == (-1, 3549, 85)


def test_failed_build_names_the_logged_error(fakes, models_dir, tmp_path):
    fakes(log_error_during_build="out of memory", build_fails=True)
    with pytest.raises(ModelError, match="TensorRT build failed: out of memory"):
        tensorrt_engine.TensorRTEngine(models_dir / "yolox_nano.onnx", precision="fp32", cache_dir=tmp_path)


def test_failure_halfway_through_opening_frees_everything(fakes, models_dir, tmp_path):
    _, cuda = fakes(fail_malloc_at=2)  # the output's device buffer
    with pytest.raises(RuntimeError, match="CUDA error"):
        tensorrt_engine.TensorRTEngine(models_dir / "yolox_nano.onnx", precision="fp32", cache_dir=tmp_path)
    assert cuda.live == {"host": set(), "device": set(), "stream": set()}


def test_fixed_batch_graph_falls_back_to_batch_one(fakes, models_dir, tmp_path):
    fakes()
    path, key = tensorrt_engine.engine_cache_entry(models_dir / "light_person_detector.onnx", "fp32", 8, cache_dir=tmp_path)
    assert (key.max_batch, key.opt_batch) == (1, 1) and path.parent == tmp_path
    assert path.name.startswith("light_person_detector-fp32-b1-sm87-trt10.3.0-")



def test_a_cached_engine_that_does_not_load_is_rebuilt_once(fakes, models_dir, tmp_path):
    """Its key and hash match, yet TensorRT refuses it (a patch update under the same version string):
    rebuilt, where failing would fail every start until systemd gives up."""
    calls, cuda = fakes()
    path, key = tensorrt_engine.engine_cache_entry(models_dir / "yolox_nano.onnx", "fp32", 8, cache_dir=tmp_path)
    path.write_bytes(b"stale-engine")
    path.with_name(path.name + tensorrt_engine.KEY_SUFFIX).write_text(json.dumps(key_record(key, b"stale-engine")))
    with tensorrt_engine.TensorRTEngine(models_dir / "yolox_nano.onnx", precision="fp32", cache_dir=tmp_path) as engine:
        assert engine.max_batch == 8
    assert calls["deserialized"] == [b"stale-engine", b"serialized-engine"] and len(calls["network_flags"]) == 1
    assert path.read_bytes() == b"serialized-engine" and cached_engine_problem(path, key) is None
    assert all(not live for live in cuda.live.values())


def test_selftest_says_whose_engine_cache_it_could_not_write(fakes, models_dir, media_dir, tmp_path, monkeypatch):
    """A technician's selftest as root-less login: the engine cache is the service user's (0750), so the build's
    write is refused. A line with the fix, where it was a traceback."""
    fakes()
    for name, value in (("MODELS", models_dir), ("MEDIA", media_dir), ("STATE", tmp_path / "state")):
        monkeypatch.setenv(f"EDGE_AGENT_{name}_DIR", str(value))
    config, _ = load_config(REPO / "examples" / "vtest.yaml")

    def refused(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(tensorrt_engine, "write_atomic", refused)
    results = {r.name: r for r in check_models(config, [np.zeros((576, 768, 3), np.uint8)] * 2, gpu_ready=True)}
    assert results["onnxruntime"].ok and not results["engine"].ok and "Permission denied" in results["engine"].detail
    assert results["engine"].hint.startswith("run selftest as the service's user (sudo -u edge-agent ...)")


def test_a_damaged_timing_cache_is_replaced_not_fatal(fakes, models_dir, tmp_path):
    calls, _ = fakes()
    _, key = tensorrt_engine.engine_cache_entry(models_dir / "yolox_nano.onnx", "fp32", 8, cache_dir=tmp_path)
    timing = tmp_path / timing_cache_name(key)
    timing.write_bytes(b"damaged-timing")
    with tensorrt_engine.TensorRTEngine(models_dir / "yolox_nano.onnx", precision="fp32", cache_dir=tmp_path):
        pass
    assert calls["timing_caches"] == [b"damaged-timing", b""] and timing.read_bytes() == b"timing"


def test_a_build_removes_the_same_engine_built_for_another_tensorrt(fakes, models_dir, tmp_path):
    fakes("10.3.0")
    with tensorrt_engine.TensorRTEngine(models_dir / "yolox_nano.onnx", precision="fp32", cache_dir=tmp_path):
        pass
    old = sorted(p.name for p in tmp_path.glob("*.plan*"))
    fakes("10.4.0")  # TensorRT upgraded: the 10.3 engine can never load again
    with tensorrt_engine.TensorRTEngine(models_dir / "yolox_nano.onnx", precision="fp32", cache_dir=tmp_path):
        pass
    now = sorted(p.name for p in tmp_path.glob("*.plan*"))
    assert len(old) == len(now) == 2 and "trt10.4.0" in now[0] and not set(old) & set(now)
