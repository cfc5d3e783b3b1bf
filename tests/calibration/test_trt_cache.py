"""TensorRT implicit-calibration cache: exact text format and the cache of the real run."""

import struct

import onnx
import pytest

from calibration.trt_cache import format_cache, parse_cache, scales_from_ranges


def test_format_is_tensorrts_exactly():
    text = format_cache({"images": 1.0, "b": 255.0 / 127.0, "a/x:0": 0.5}, "8.6.2")
    # names sorted; scale as big-endian float32 hex: 1.0 = 0x3f800000, 0.5 = 0x3f000000
    assert text == "TRT-8602-EntropyCalibration2\na/x:0: 3f000000\nb: 40008102\nimages: 3f800000\n"


@pytest.mark.parametrize(("version", "header"), [("8.5.2", "TRT-8502"), ("8.6.2.3", "TRT-8602"), ("10.3.0", "TRT-100300")])
def test_header_version_number(version, header):
    assert format_cache({}, version).startswith(f"{header}-EntropyCalibration2\n")


def test_symmetric_scales_and_roundtrip():
    scales = scales_from_ranges({"a": (-0.28, 12.7), "b": (-3.0, 1.0), "dead": (0.0, 0.0)})
    assert scales["a"] == pytest.approx(0.1) and scales["b"] == pytest.approx(3 / 127) and scales["dead"] > 0
    header, parsed = parse_cache(format_cache(scales, "8.6.2"))
    assert header == "TRT-8602-EntropyCalibration2"
    assert parsed == pytest.approx({k: struct.unpack(">f", struct.pack(">f", v))[0] for k, v in scales.items()})


def test_malformed_line_refused():
    with pytest.raises(ValueError, match="malformed"):
        parse_cache("TRT-8602-EntropyCalibration2\nimages 3f800000\n")


def test_real_run_caches_cover_the_fp32_graph(yolox_int8, models_dir):
    out_dir, report = yolox_int8
    assert report["trt_calibration_caches"] == [
        "yolox_nano_int8.trt-8.5.2.calibration.cache", "yolox_nano_int8.trt-8.6.2.calibration.cache"]
    header, scales = parse_cache((out_dir / report["trt_calibration_caches"][1]).read_text())
    assert header == "TRT-8602-EntropyCalibration2"
    graph = onnx.load_model(str(models_dir / "yolox_nano.onnx")).graph
    tensors = {o for n in graph.node for o in n.output} | {"images"}
    assert set(scales) <= tensors and len(scales) > 300
    # the input is raw 0..255 pixels: amax 255 (some calibration frame has a white pixel)
    assert scales["images"] == pytest.approx(255 / 127, rel=0.02)
