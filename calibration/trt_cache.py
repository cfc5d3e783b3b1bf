"""TensorRT implicit-calibration cache (IInt8EntropyCalibrator2's `readCalibrationCache` format).

JetPack releases whose TensorRT still calibrates implicitly (JetPack 5: 8.5.2,
JetPack 6: 8.6.2) build INT8 engines from the FP32 ONNX plus this cache,
instead of the QDQ graph. The text format, as TensorRT writes it:

    TRT-<NV_TENSORRT_VERSION>-EntropyCalibration2
    <tensor name>: <float32 scale, big-endian IEEE-754, 8 hex digits>

with scale = max |activation| / 127 (TensorRT INT8 is symmetric). TensorRT
refuses a header whose version is not its own, so the cache is written for a
named TensorRT version.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from engines.tensorrt_plan import calibration_version_number

INT8_MAX = 127
# A tensor that was constant 0 in every frame still needs a positive scale.
_MIN_AMAX = 1e-8


def scales_from_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """{tensor: (lowest, highest)} -> {tensor: symmetric INT8 scale = max(|lowest|, |highest|) / 127}."""
    return {name: max(abs(lo), abs(hi), _MIN_AMAX) / INT8_MAX for name, (lo, hi) in ranges.items()}


def format_cache(scales: Mapping[str, float], trt_version: str) -> str:
    """The cache text for TensorRT `trt_version` ("8.6.2"), one line per tensor in name order."""
    header = f"TRT-{calibration_version_number(trt_version)}-EntropyCalibration2"
    lines = [f"{name}: {struct.pack('>f', scale).hex()}" for name, scale in sorted(scales.items())]
    return "\n".join([header, *lines]) + "\n"


def parse_cache(text: str) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}) of a cache's text; ValueError on a malformed line."""
    header, *lines = text.strip().splitlines()
    scales = {}
    for line in lines:
        name, sep, hex_scale = line.rpartition(": ")
        if not sep or len(hex_scale) != 8:
            raise ValueError(f"malformed calibration cache line {line!r}")
        scales[name] = struct.unpack(">f", bytes.fromhex(hex_scale))[0]
    return header, scales
