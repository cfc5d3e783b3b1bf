"""Native libraries' own stderr lines (FFmpeg, OpenCV, ONNX Runtime, GStreamer) as records
of the structured log, never raw text between its JSON lines.

C code writes to file descriptor 2 directly. `route_native_stderr` points descriptor 2 at
a pipe and moves Python's `sys.stderr` (where the log goes) to a copy of the original
descriptor; a thread reads the pipe and logs each line as `native_log` with the library
it came from and a level read from the line's own marker. Known noise is logged at debug.
"""

from __future__ import annotations

import os
import re
import sys
import threading

import structlog

from agent.settings.camera import redact_urls

log = structlog.get_logger("native")

# (pattern, source, level or None: take it from the pattern's `level` group)
_RULES: list[tuple[re.Pattern[str], str, str | None]] = [
    # OpenCV tries every backend by name: this line follows any source that cannot be opened
    (re.compile(r"^\[ ?WARN:.*can't be used to capture by name"), "opencv", "debug"),
    (re.compile(r"^\[ ?(?P<level>ERROR|WARN|INFO|DEBUG|VERBOSE):"), "opencv", None),
    (re.compile(r"\[(?P<level>[VIWEF]):onnxruntime:"), "onnxruntime", None),
    (re.compile(r"^\[[\w-]+ @ 0x[0-9a-f]+\]"), "ffmpeg", "warning"),
    (re.compile(r"GStreamer-(?P<level>CRITICAL|WARNING|INFO|DEBUG)"), "gstreamer", None),
]
_LEVELS = {
    "ERROR": "error", "WARN": "warning", "INFO": "info", "DEBUG": "debug", "VERBOSE": "debug",
    "V": "debug", "I": "info", "W": "warning", "E": "error", "F": "critical",
    "CRITICAL": "critical", "WARNING": "warning",
}  # fmt: skip

_routed = False


def classify(line: str) -> tuple[str, str]:
    """(source, level) of one native line; unknown lines are warnings from `native`."""
    for pattern, source, level in _RULES:
        if m := pattern.search(line):
            return source, level or _LEVELS[m.group("level")]
    return "native", "warning"


def route_native_stderr() -> None:
    """Send descriptor 2 through the log (once per process); Python's sys.stderr keeps the real stream."""
    global _routed
    if _routed:
        return
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = os.fdopen(real, "w", buffering=1, encoding="utf-8", errors="replace")
    threading.Thread(target=_pump, args=(read_end,), name="native-log", daemon=True).start()
    _routed = True


def _pump(read_end: int) -> None:
    with os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as lines:
        for raw in lines:
            if line := redact_urls(raw.strip()):  # a camera URL in a library's message keeps no password
                source, level = classify(line)
                getattr(log, level)("native_log", source=source, line=line)
