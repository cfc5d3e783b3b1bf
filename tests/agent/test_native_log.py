"""Native libraries' stderr lines become records of the JSON log, never raw lines between them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.io.native_log import classify
from testbed.services import free_port

# A process as `edge-agent run` sets itself up, then native code writing to descriptor 2:
# FFmpeg refused by a closed port and OpenCV's note after it, and a raw C-level write.
SCRIPT = """
import os, sys, structlog
from agent.io import logs
from agent.io.native_log import route_native_stderr
route_native_stderr()
logs.configure("debug")
import cv2
cv2.VideoCapture("rtsp://127.0.0.1:{port}/cam", cv2.CAP_FFMPEG)
os.write(2, b"something else from C\\n")
os.write(2, b"[rtsp @ 0x55d1c0a4e2c0] rtsp://admin:s3cret@10.0.0.7/cam: 401 Unauthorized\\n")
structlog.get_logger().info("python_side")
import time; time.sleep(0.5)  # the pipe's reader logs before the process ends
"""


def test_native_lines_are_log_records() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(port=free_port())], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    native = {r["source"]: r for r in records if r["event"] == "native_log" and "10.0.0.7" not in r["line"]}
    unauthorized = [r["line"] for r in records if r["event"] == "native_log" and "10.0.0.7" in r["line"]]
    assert unauthorized == ["[rtsp @ 0x55d1c0a4e2c0] rtsp://admin:***@10.0.0.7/cam: 401 Unauthorized"]
    assert "s3cret" not in result.stderr  # a camera's password in a library's message never reaches the log
    assert "Connection refused" in native["ffmpeg"]["line"] and native["ffmpeg"]["level"] == "warning"
    assert native["opencv"]["level"] == "debug" and "cap.cpp" in native["opencv"]["line"]
    assert native["native"] == {**native["native"], "line": "something else from C", "level": "warning"}
    assert any(r["event"] == "python_side" for r in records)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[rtsp @ 0x55d1c0a4e2c0] method DESCRIBE failed: 404 Not Found", ("ffmpeg", "warning")),
        ("[ERROR:0@1.2] global cap_ffmpeg_impl.hpp:1541 grabFrame packet read max attempts exceeded", ("opencv", "error")),
        ("[ WARN:0@3.1] global cap_gstreamer.cpp:2784 handleMessage pipeline stalled", ("opencv", "warning")),
        ("2026-11-29 18:40:00.123 [W:onnxruntime:, session_state.cc:1171 Verify] some nodes on CPU", ("onnxruntime", "warning")),
        ("2026-11-29 18:40:00.123 [E:onnxruntime:, inference_session.cc:12 Run] failed", ("onnxruntime", "error")),
        ("(python3:77): GStreamer-CRITICAL **: gst_object_unref: assertion failed", ("gstreamer", "critical")),
    ],
)
def test_levels_come_from_the_lines_own_markers(line: str, expected: tuple[str, str]) -> None:
    assert classify(line) == expected
