"""The pure TensorRT rules: cache keys and files, profiles, batch split, buffers. No GPU needed."""

import ctypes
import json
from dataclasses import replace

import numpy as np
import pytest

from engines.tensorrt_plan import (
    KEY_SUFFIX,
    BufferSpec,
    EngineKey,
    Profile,
    cached_engine_problem,
    calibration_version_number,
    default_profile,
    host_view,
    key_record,
    plan_buffers,
    select_profile,
    split_batches,
    timing_cache_name,
)

KEY = EngineKey("NVIDIA Orin (nvgpu)", (8, 7), "10.3.0", "ab" * 32, "int8", 8, 8)


@pytest.mark.parametrize(
    "change",
    [
        {"gpu_name": "NVIDIA A2"},
        {"compute_capability": (8, 6)},
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
    assert timing_cache_name("NVIDIA Orin (nvgpu)", (8, 7), "10.3.0") == "timing-NVIDIA_Orin__nvgpu_-sm87-trt10.3.0.cache"


def _cache(tmp_path, key=KEY, engine=b"engine-bytes"):
    path = tmp_path / key.file_name("m")
    path.write_bytes(engine)
    path.with_name(path.name + KEY_SUFFIX).write_text(json.dumps(key_record(key, engine)))
    return path


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
    with pytest.raises(ValueError):
        Profile(2, 1, 8)


@pytest.mark.parametrize(
    ("batch", "expected"),
    [(1, 0), (2, 0), (3, 0), (4, 0), (5, 1), (8, 1)],  # 3: opt 1 is nearer than opt 8
)
def test_select_profile_prefers_nearest_opt(batch, expected):
    profiles = [Profile(1, 1, 4), Profile(1, 8, 8)]
    assert select_profile(profiles, batch) == expected


def test_select_profile_refuses_a_batch_no_profile_holds():
    with pytest.raises(ValueError, match="no optimization profile holds batch 9"):
        select_profile([Profile(1, 4, 8)], 9)


@pytest.mark.parametrize(
    ("frames", "max_batch", "expected"),
    [(0, 8, []), (1, 8, [1]), (8, 8, [8]), (9, 8, [5, 4]), (17, 8, [6, 6, 5]), (3, 1, [1, 1, 1])],
)
def test_split_batches(frames, max_batch, expected):
    assert split_batches(frames, max_batch) == expected


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


@pytest.mark.parametrize(("version", "number"), [("8.5.2", 8502), ("8.6.2", 8602), ("10.3.0", 100300), ("7.1.3", 7103)])
def test_calibration_version_number(version, number):
    assert calibration_version_number(version) == number


def test_calibration_version_number_refuses_garbage():
    with pytest.raises(ValueError):
        calibration_version_number("ten")


def test_backend_module_imports_without_tensorrt_or_cuda():
    import subprocess
    import sys

    code = "import sys, engines.tensorrt_engine; print(sorted(m for m in ('tensorrt', 'cuda') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
