"""The Jetson GStreamer pipeline builder: tables for codecs, latency and hostile credentials,
and GStreamer's own parser (Debian's interpreter) showing that no value can add an element."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import quote, unquote

import cv2
import pytest

from agent.io.gst import (
    choose_backend,
    codec_from_fourcc,
    converter_caps,
    jetson_rtsp_pipeline,
    opencv_has_gstreamer,
    quote_value,
    rtspsrc,
)
from agent.settings.camera import CameraConfig

SYSTEM_PYTHON = "/usr/bin/python3"
TAIL = (
    "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR "
    "! appsink drop=true max-buffers=1 sync=false"
)


@pytest.mark.parametrize(
    ("codec", "latency_ms", "expected"),
    [
        (
            "h264",
            200,
            f'rtspsrc location="rtsp://cam:554/s1" latency=200 protocols=tcp ! rtph264depay ! h264parse ! {TAIL}',
        ),
        (
            "h265",
            0,
            f'rtspsrc location="rtsp://cam:554/s1" latency=0 protocols=tcp ! rtph265depay ! h265parse ! {TAIL}',
        ),
        (
            "h264",
            2000,
            f'rtspsrc location="rtsp://cam:554/s1" latency=2000 protocols=tcp ! rtph264depay ! h264parse ! {TAIL}',
        ),
    ],
)
def test_pipeline_per_codec_and_latency(codec: str, latency_ms: int, expected: str) -> None:
    assert jetson_rtsp_pipeline("rtsp://cam:554/s1", codec, latency_ms) == expected


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("rtsp://admin:secret@10.0.0.5/live", "rtsp://admin:secret@10.0.0.5/live"),
        # existing escapes survive; the credentials are re-encoded whole
        ("rtsp://ad%40min:p%40ss%3Aw@cam/x", "rtsp://ad%40min:p%40ss%3Aw@cam/x"),
        # quotes, backslashes, spaces and `!` cannot end the quoted value
        ('rtsp://u:a"b\\c ! fakesink@cam/x', "rtsp://u:a%22b%5Cc%20%21%20fakesink@cam/x"),
        ('rtsp://cam/a b"c\\?q=" ! x', "rtsp://cam/a%20b%22c%5C?q=%22%20!%20x"),
        ("rtsp://u:@cam/x", "rtsp://u:@cam/x"),
        ("rtsp://cam/caf\u00e9", "rtsp://cam/caf%C3%A9"),
        ("rtsps://[fe80::1]:8322/a?b=1", "rtsps://[fe80::1]:8322/a?b=1"),
    ],
)
def test_location_is_percent_encoded_and_quoted(url: str, location: str) -> None:
    assert rtspsrc(url, 100) == f'rtspsrc location="{location}" latency=100 protocols=tcp'


@pytest.mark.parametrize(
    "bad",
    [
        ("http://cam/x", 200),
        ("/videos/a.mp4", 200),
        ("rtsp:///nohost", 200),
        ("rtsp://cam/x", -1),
        ("rtsp://cam/x", 60_001),
    ],
)
def test_rtspsrc_refuses_what_it_cannot_build(bad: tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        rtspsrc(*bad)


@pytest.mark.parametrize("value", ['a"b', "a\\", "a\nb", "a\x7fb"])
def test_quote_value_refuses_what_could_escape_the_quotes(value: str) -> None:
    with pytest.raises(ValueError, match="percent-encode"):
        quote_value(value)


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(ValueError, match="codec"):
        jetson_rtsp_pipeline("rtsp://cam/x", "mjpeg")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fourcc", "codec"),
    [("avc1", "h264"), ("H264", "h264"), ("hevc", "h265"), ("hvc1", "h265"), ("MJPG", None), ("", None)],
)
def test_codec_from_fourcc(fourcc: str, codec: str | None) -> None:
    assert codec_from_fourcc(fourcc) == codec


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ("  Video I/O:\n    GStreamer:                   YES (1.22.0)\n", True),
        ("  Video I/O:\n    GStreamer:                   NO\n", False),
        ("  Video I/O:\n    FFMPEG:                      YES\n", False),
    ],
)
def test_opencv_has_gstreamer_reads_the_build_information(info: str, expected: bool) -> None:
    assert opencv_has_gstreamer(info) is expected


def test_opencv_has_gstreamer_reads_this_opencvs_own_line() -> None:
    # the pip wheel installed here is built without GStreamer and says so in a line the parser must find:
    # an answer from a missing line would be the default False, whatever the build
    info = cv2.getBuildInformation()
    assert [line.split(":")[1].strip() for line in info.splitlines() if line.split(":")[0].strip() == "GStreamer"] == ["NO"]
    assert opencv_has_gstreamer() is False
    assert opencv_has_gstreamer(re.sub(r"(GStreamer:\s*)NO", r"\1YES (1.22.0)", info)) is True


def test_choose_backend(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"")
    rtsp = CameraConfig(id="c1", url="rtsp://u:p@cam/s")
    file = CameraConfig(id="c2", url=str(clip))
    backend, pipeline = choose_backend(rtsp, on_jetson=True, has_gst=True, codec="h265", latency_ms=50)
    assert backend == "gstreamer" and pipeline == jetson_rtsp_pipeline("rtsp://u:p@cam/s", "h265", 50, 1280)
    assert "nvvidconv ! video/x-raw,width=[1,1280],pixel-aspect-ratio=1/1,format=BGRx ! videoconvert" in pipeline
    assert choose_backend(rtsp, on_jetson=True, has_gst=False) == ("ffmpeg", "rtsp://u:p@cam/s")
    assert choose_backend(rtsp, on_jetson=False, has_gst=True) == ("ffmpeg", "rtsp://u:p@cam/s")
    assert choose_backend(file, on_jetson=True, has_gst=True) == ("ffmpeg", str(clip))


_PARSE = """
import json, sys, gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import Gst, GstRtsp
Gst.init(None)
try:
    pipe = Gst.parse_launch(sys.argv[1])
except Exception as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(0)
found, it = [], pipe.iterate_elements()
while True:
    res, el = it.next()
    if res != Gst.IteratorResult.OK:
        break
    props = {}
    if el.get_factory().get_name() == "rtspsrc":
        # rtspsrc parses its location with gst_rtsp_url_parse: ask it the same way
        _, url = GstRtsp.rtsp_url_parse(el.get_property("location"))
        props = {"user": url.user, "password": url.passwd, "host": url.host, "request": url.get_request_uri()}
    found.append([el.get_factory().get_name(), props])
print(json.dumps({"elements": sorted(found)}))
"""


def _gst_parse(description: str) -> dict:
    probe = [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtsp', '1.0')"]
    if subprocess.run(probe, capture_output=True, timeout=30).returncode != 0:
        pytest.fail(f"{SYSTEM_PYTHON} has no GStreamer bindings: run deploy/setup-debian.sh (python3-gi, gir1.2-gst-rtsp-server-1.0)")
    done = subprocess.run([SYSTEM_PYTHON, "-c", _PARSE, description], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("user", "password", "path"),
    [
        ("admin", 'x" ! fakesink name=evil ! "', "/s?a=1"),
        ("a\\", 'b\\" latency=0 ! identity', "/s"),
        ("o'k", "!!! () \\", '/a b" ! fakesink "'),
    ],
)
def test_gstreamer_sees_one_source_with_the_exact_credentials(user: str, password: str, path: str) -> None:
    """GStreamer's own parser: one rtspsrc and one fakesink, whatever the URL holds.
    Only the source part is parsed: the NVIDIA elements do not exist off a Jetson."""
    url = f"rtsp://{quote(user, safe='')}:{quote(password, safe='')}@cam:554{path}"
    parsed = _gst_parse(f"{rtspsrc(url)} ! fakesink")
    assert "error" not in parsed, parsed
    (fakesink, _), (source, props) = parsed["elements"]
    assert (fakesink, source) == ("fakesink", "rtspsrc")
    assert props["user"] == user and props["password"] == password and props["host"] == "cam"
    assert unquote(props["request"]) == "rtsp://cam:554" + path  # the path reaches the camera as written


def test_a_reader_on_a_jetson_with_gstreamer_opens_rtsp_through_the_hardware_pipeline(monkeypatch) -> None:
    """Only the choice and the pipeline can be checked here (no Jetson): the reader hands
    OpenCV the NVDEC pipeline for RTSP, and the plain URL for files and elsewhere."""
    import agent.io.sources as sources
    from agent.io.sources import CameraReader
    from agent.settings.camera import CameraConfig

    camera = CameraConfig(id="gate", url="rtsp://10.0.0.7:554/s1", codec="h265", latency_ms=100)
    assert CameraReader(camera)._backend == "ffmpeg"  # this box: pip OpenCV, not a Jetson
    monkeypatch.setattr(sources, "is_jetson", lambda: True)
    monkeypatch.setattr(sources, "opencv_has_gstreamer", lambda: True)
    reader = CameraReader(camera)
    assert reader._backend == "gstreamer"
    assert "nvv4l2decoder" in reader._source and "rtph265depay" in reader._source and "latency=100" in reader._source


_NEGOTIATE = """
import sys, gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
pipe = Gst.parse_launch(sys.argv[1])
pipe.set_state(Gst.State.PAUSED)
pipe.get_state(5 * Gst.SECOND)
caps = pipe.get_by_name("sink").get_static_pad("sink").get_current_caps().get_structure(0)
print(caps.get_value("width"), caps.get_value("height"))
pipe.set_state(Gst.State.NULL)
"""


@pytest.mark.parametrize(
    ("camera", "expected"),
    [((1920, 1080), "1280 720"), ((2560, 1440), "1280 720"), ((640, 480), "640 480"), ((1280, 1024), "1280 1024")],
)
def test_converter_caps_scale_down_keeping_the_aspect_ratio(camera: tuple[int, int], expected: str) -> None:
    """The caps nvvidconv is given, negotiated by GStreamer itself with videoscale standing in for
    nvvidconv (absent off a Jetson; its caps fixation follows the same rule, L4T gstnvvconv.c)."""
    width, height = camera
    description = (
        f"videotestsrc num-buffers=1 ! video/x-raw,format=BGRx,width={width},height={height} "
        f"! videoscale ! {converter_caps(1280)} ! fakesink name=sink"
    )
    done = subprocess.run([SYSTEM_PYTHON, "-c", _NEGOTIATE, description], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_full_resolution_when_not_capped() -> None:
    assert converter_caps(None) == "video/x-raw,format=BGRx"
    assert f"nvvidconv ! {converter_caps(None)} ! videoconvert" in jetson_rtsp_pipeline("rtsp://cam/s")
    with pytest.raises(ValueError, match="max_width"):
        jetson_rtsp_pipeline("rtsp://cam/s", max_width=0)
