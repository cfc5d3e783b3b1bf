"""Decode cost of a camera source, measured beside the agent (the reader does not time its reads).

CameraReader opens sources with `cv2.VideoCapture(url, cv2.CAP_FFMPEG)`; this
opens the same URL the same way and times `read()`. Per frame it records the
wall time and the process CPU time (FFmpeg decodes on its own threads, so
thread time would miss it). For a file, reads run flat out and both figures are
decode cost. For RTSP, `read()` also waits for the next frame of the live
stream, so only the CPU figure is decode cost. Run it while nothing else in this
process works.
"""

from __future__ import annotations

import time

import cv2

from benchmarks.report import summary_ms


def probe_decode(url: str, frames: int) -> dict:
    """Read up to `frames` frames of `url`: {cpu_ms, wall_ms} summaries and the frame size."""
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise RuntimeError(f"cannot open {url}")
    cpu_ms: list[float] = []
    wall_ms: list[float] = []
    shape = None
    try:
        for _ in range(frames):
            c0, w0 = time.process_time(), time.perf_counter()
            ok, image = capture.read()
            if not ok:
                break
            cpu_ms.append((time.process_time() - c0) * 1000)
            wall_ms.append((time.perf_counter() - w0) * 1000)
            shape = image.shape
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return {
        "url": url,
        "size_wh": None if shape is None else [shape[1], shape[0]],
        "source_fps": round(fps, 3),
        "cpu_ms": summary_ms(cpu_ms),
        # a live stream's read() waits for the camera: wall time is decode cost for files only
        "wall_ms": summary_ms(wall_ms) if not url.startswith("rtsp") else None,
    }
