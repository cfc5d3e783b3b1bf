"""The pure TensorRT rules: versions and precisions, cache keys and files, profiles, batch split,
buffers. No GPU needed."""

import ctypes
import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines.tensorrt_plan import (
    KEY_SUFFIX,
    BufferSpec,
    BuildSettings,
    EngineKey,
    GraphTypes,
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
    trt_major,
)

KEY = EngineKey("NVIDIA Orin (nvgpu)", (8, 7), 8, 7620, "10.3.0", "ab" * 32, "int8", 8, 8)


@pytest.mark.parametrize(
    "change",
    [
        {"gpu_name": "NVIDIA A2"},
        {"compute_capability": (8, 6)},
        {"gpu_sms": 4},  # an Orin Nano 4GB's image cloned from an 8GB's
        {"gpu_memory_mib": 15_600},  # an Orin NX 16GB's
        {"trt_version": "10.3.1"},
        {"model_sha256": "cd" * 32},
        {"precision": "fp16"},
        {"max_batch": 4},
        {"opt_batch": 4},
    ],
)
def test_every_key_field_changes_the_file_name(change):
    assert replace(KEY, **change).file_name("yolox") != KEY.file_name("yolox")


def test_file_name_is_readable_and_safe():
    name = KEY.file_name("yolox nano/../x")
    assert name.startswith("yolox_nano_.._x-int8-b8-sm87-trt10.3.0-") and name.endswith(".plan") and "/" not in name
    assert timing_cache_name(KEY) == "timing-NVIDIA_Orin__nvgpu_-sm87-8sms-7620mib-trt10.3.0.cache"
    assert timing_cache_name(replace(KEY, gpu_sms=4)) != timing_cache_name(KEY)


def _cache(tmp_path, key=KEY, engine=b"engine-bytes"):
    path = tmp_path / key.file_name("m")
    path.write_bytes(engine)
    path.with_name(path.name + KEY_SUFFIX).write_text(json.dumps(key_record(key, engine)))
    return path


def test_engines_of_the_same_model_for_another_gpu_or_tensorrt_are_superseded(tmp_path):
    old_trt = _cache(tmp_path, replace(KEY, trt_version="10.2.0"))
    other_module = _cache(tmp_path, replace(KEY, gpu_sms=4, gpu_memory_mib=3400))
    kept = [
        _cache(tmp_path, KEY),  # its own
        _cache(tmp_path, replace(KEY, model_sha256="cd" * 32)),  # another model: an update's, or a rollback's
        _cache(tmp_path, replace(KEY, precision="fp16")),
        _cache(tmp_path, replace(KEY, max_batch=4)),
    ]
    (tmp_path / "foreign.plan.key.json").write_text("[not a record]")
    stale = superseded_engines(tmp_path, KEY)
    assert sorted(stale) == sorted([old_trt, old_trt.with_name(old_trt.name + KEY_SUFFIX),
                                    other_module, other_module.with_name(other_module.name + KEY_SUFFIX)])  # fmt: skip
    assert not set(stale) & set(kept)


def test_cached_engine_accepted_only_for_its_exact_key(tmp_path):
    path = _cache(tmp_path)
    assert cached_engine_problem(path, KEY) is None
    assert cached_engine_problem(path, replace(KEY, trt_version="10.4.0")) == "engine built for another trt_version"
    assert cached_engine_problem(tmp_path / "absent.plan", KEY) == "no cached engine"


def test_cached_engine_with_changed_bytes_or_broken_sidecar_is_rebuilt(tmp_path):
    path = _cache(tmp_path)
    path.write_bytes(b"engine-bytes-truncat")
    assert "SHA-256" in cached_engine_problem(path, KEY)
    path.with_name(path.name + KEY_SUFFIX).write_text("{not json")
    assert cached_engine_problem(path, KEY).startswith("unreadable key file")


def test_profile_shapes_and_validation():
    assert default_profile(8).shapes((3, 416, 416)) == ((1, 3, 416, 416), (8, 3, 416, 416), (8, 3, 416, 416))
    assert default_profile(8, 2) == Profile(1, 2, 8)
    assert default_profile(1, 8) == Profile(1, 1, 1)  # a graph that does not batch: opt follows max
    with pytest.raises(ValueError):
        Profile(2, 1, 8)


def test_plan_buffers_sizes_and_dtypes():
    specs = plan_buffers(
        [("images", True, "FLOAT", (-1, 3, 416, 416)), ("output", False, "HALF", (-1, 3549, 85))], max_batch=4
    )
    assert specs[0] == BufferSpec("images", True, np.dtype(np.float32), (4, 3, 416, 416))
    assert specs[0].nbytes == 4 * 3 * 416 * 416 * 4 and specs[0].nbytes_for(1) == 3 * 416 * 416 * 4
    assert specs[1].dtype == np.float16 and specs[1].shape_for(2) == (2, 3549, 85)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (("x", True, "FP8", (-1, 3)), "unsupported TensorRT dtype"),
        (("x", True, "FLOAT", (-1, -1, 3)), "must be"),
        (("x", True, "FLOAT", ()), "must be"),
    ],
)
def test_plan_buffers_refuses(tensor, message):
    with pytest.raises(ValueError, match=message):
        plan_buffers([tensor], max_batch=2)


def test_host_view_is_a_view_of_the_memory():
    spec = BufferSpec("out", False, np.dtype(np.float32), (2, 3))
    memory = (ctypes.c_float * 6)(*range(6))
    view = host_view(ctypes.addressof(memory), spec)
    assert view.shape == (2, 3) and view[1, 2] == 5.0
    view[0, 0] = 42.0
    assert memory[0] == 42.0


FP32, QDQ, FP16 = GraphTypes(qdq=False, fp16=False), GraphTypes(qdq=True, fp16=False), GraphTypes(qdq=False, fp16=True)
STRONG = BuildSettings(strongly_typed=True)


@pytest.mark.parametrize(
    ("version", "precision", "graph", "expected"),
    [
        # explicit quantization: strongly typed, no precision flag, on both majors (JetPack 6: 10.3)
        ("10.3.0.30", "int8", QDQ, STRONG),
        ("11.4.1", "int8", QDQ, STRONG),
        ("10.3.0", "fp32", FP32, STRONG),
        ("11.0.0", "fp32", FP32, STRONG),
        ("11.0.0", "fp16", FP16, STRONG),
        # only 10.x can still make FP16 from an FP32 graph, weakly typed
        ("10.13.0.35", "fp16", FP32, BuildSettings(strongly_typed=False, fp16_flag=True)),
    ],
)
def test_build_settings(version, precision, graph, expected):
    assert build_settings(version, precision, graph) == expected


@pytest.mark.parametrize(
    ("version", "precision", "graph", "message"),
    [
        ("8.6.2", "int8", QDQ, "TensorRT 8.6.2 is not supported"),
        ("12.0.0", "fp32", FP32, "TensorRT 12.0.0 is not supported"),
        ("10.3.0", "int8", FP32, "says int8 but the graph has no Q/DQ nodes"),  # the FP32 graph labelled int8
        ("11.4.1", "fp32", QDQ, "says fp32 but the graph has Q/DQ nodes"),
        ("10.3.0", "fp32", FP16, "has FP16 tensors"),
        ("11.4.1", "fp16", FP32, "TensorRT 11 builds FP16 only from an FP16 graph"),
    ],
)
def test_build_settings_refuses(version, precision, graph, message):
    with pytest.raises(ValueError, match=message):
        build_settings(version, precision, graph)


def test_trt_major():
    assert trt_major("10.3.0.30") == 10 and trt_major("11.4.1") == 11
    with pytest.raises(ValueError):
        trt_major("ten")


def _graph(nodes: list, initializers: list) -> onnx.ModelProto:
    return helper.make_model(helper.make_graph(nodes, "g", [], [], initializers))


def test_graph_types():
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    qdq = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s"], ["y"])]
    assert graph_types(_graph(qdq, [scale])) == QDQ
    assert graph_types(_graph([helper.make_node("Relu", ["x"], ["y"])], [scale])) == FP32
    half = numpy_helper.from_array(np.ones(2, np.float16), "w")
    assert graph_types(_graph([helper.make_node("Relu", ["x"], ["y"])], [half])) == FP16
    cast = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16)
    assert graph_types(_graph([cast], [])) == FP16


def test_backend_module_imports_without_tensorrt_or_cuda():
    import subprocess
    import sys

    code = "import sys, engines.tensorrt_engine; print(sorted(m for m in ('tensorrt', 'cuda') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
