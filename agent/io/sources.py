"""Camera readers: one thread per camera reads RTSP or a file into a bounded queue.

A reader never blocks another camera: each owns its thread, its OpenCV capture
and its queue. Live sources drop the oldest frame when the pipeline falls
behind; file sources in "fast" replay block instead, so a file run is
deterministic. A camera that fails to open or stops delivering is retried with
capped exponential backoff and jitter; states go out through `on_status`.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import cv2
import structlog

from agent.core.types import Frame
from agent.io.gst import choose_backend, is_jetson, opencv_has_gstreamer
from agent.io.rtsp_probe import why_not_open
from agent.settings.camera import CameraConfig

__all__ = ["CameraReader", "FrameQueue", "ReaderStats", "StatusCallback", "backoff_s"]

StatusCallback = Callable[[str, str, str], None]
"""on_status(camera_id, state, detail); state is connecting | online | offline | ended."""

_FPS_WINDOW_S = 5.0
# At each (re)connect FFmpeg hands over at once the frames it buffered while probing the stream (the testbed's
# RTSP camera: 27 frames, 2.7 s of video, within 30 ms). They are the past: stamped with the time they are read
# they would squeeze 2.7 s of movement into a few ms for the tracker, and the queue would drop them as if the
# pipeline lagged. A live source's frames are skipped until a read waits for the camera (LIVE_EDGE_WAIT of a
# frame interval), at most MAX_BACKLOG_S of them.
LIVE_EDGE_WAIT = 0.5
MAX_BACKLOG_S = 10.0
# Asking an RTSP camera why it did not open: within this, and once per offline spell, then at most this often
# (each ask with the url's login is a login attempt, and cameras lock an account after a few failed ones).
PROBE_TIMEOUT_S = 5.0
PROBE_EVERY_S = 600.0
# OpenCV says only that the open failed: an RTSP camera is asked why (agent/io/rtsp_probe.py); these say the rest
_CANNOT_OPEN = (
    "cannot open source: nothing answered at that address within open_timeout_s, it refused the connection, "
    "or the path or credentials are wrong (the decoder's own reason is in the native_log lines around this)"
)
SERVED_NOT_DECODED = (
    "cannot open source: the camera serves the stream, but the decoder could not open it (a codec it lacks? "
    "its own reason is in the native_log lines around this)"
)


def capture_timeouts(config: CameraConfig) -> list[int]:
    """OpenCV's open parameters for the camera's open and read timeouts, per capture, for both backends
    (GStreamer's since OpenCV 4.7, JetPack 6 has 4.8; without them a dead camera holds a read for OpenCV's
    default 30 s, systemd's watchdog period)."""
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(config.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(config.read_timeout_s * 1000),
    ]  # fmt: skip


def cannot_open(config: CameraConfig) -> str:
    """Why `config`'s source did not open, as precisely as can be known: an rtsp:// camera is asked, within
    PROBE_TIMEOUT_S (a courtesy to the reader: never an error of its own)."""
    if urlsplit(config.url).scheme != "rtsp":  # a file, or rtsps (TLS): not asked
        return _CANNOT_OPEN
    try:
        why = why_not_open(config.url, min(config.open_timeout_s, PROBE_TIMEOUT_S))
    except Exception as exc:  # noqa: BLE001 - the type only: a message could hold part of the url
        structlog.get_logger(__name__).warning("camera.probe_failed", camera_id=config.id, error=type(exc).__name__)
        return _CANNOT_OPEN
    return SERVED_NOT_DECODED if why is None else f"cannot open source: {why}"


def backoff_s(attempt: int, min_s: float, max_s: float, u: float) -> float:
    """Delay before retry number `attempt` (0-based), in seconds.

    The ceiling doubles from min_s per attempt up to max_s; `u` in [0, 1)
    spreads the delay over [max(min_s, ceiling / 2), ceiling] so cameras that
    failed together (a switch reboot) do not retry in lockstep.
    """
    ceiling_s = min(max_s, min_s * 2.0 ** min(attempt, 62))
    floor_s = max(min_s, ceiling_s / 2)
    return floor_s + (ceiling_s - floor_s) * u


BEHIND_WAIT_S = 0.05


class FrameQueue:
    """Bounded, thread-safe frame queue between one reader and the pipeline.

    put() on a full queue drops the oldest frame and counts it (live), or
    waits for room when `block_when_full` (fast file replay). close() wakes
    every waiter; afterwards put() refuses frames and get() drains what is left.
    """

    def __init__(self, maxsize: int, block_when_full: bool = False) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._frames: collections.deque[tuple[Frame, float]] = collections.deque()  # with its monotonic arrival
        self._maxsize = maxsize
        self._block = block_when_full
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.waited_s = 0.0  # how long the last frame taken waited in the queue

    def put(self, frame: Frame) -> bool:
        """Add a frame; False if the queue was closed (the frame is discarded)."""
        with self._cond:
            if self._block:
                self._cond.wait_for(lambda: self._closed or len(self._frames) < self._maxsize)
            if self._closed:
                return False
            if len(self._frames) >= self._maxsize:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append((frame, time.monotonic()))
            self._cond.notify_all()
            return True

    def get(self, timeout_s: float | None = None) -> Frame | None:
        """The oldest frame, waiting up to timeout_s; None on timeout or once closed and drained."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frames or self._closed, timeout_s) or not self._frames:
                return None
            frame, arrived = self._frames.popleft()
            self.waited_s = time.monotonic() - arrived
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def behind(self) -> bool:
        """Whether the consumer of a live queue is not keeping up: the last frame it took waited more than
        BEHIND_WAIT_S (half the 100 ms frame-to-event budget). A blocking replay is never behind."""
        return not self._block and self.waited_s > BEHIND_WAIT_S


@dataclass(frozen=True, slots=True)
class ReaderStats:
    """A snapshot of one reader. reconnects counts reopen attempts after a failure or a lost stream;
    fps is the delivery rate over the last few seconds."""

    camera_id: str
    state: str
    frames_read: int
    frames_dropped: int
    reconnects: int
    fps: float


@dataclass(frozen=True, slots=True)
class _Session:
    """Outcome of one open capture: why it stopped, and whether it ran long enough to reset backoff."""

    outcome: Literal["ended", "lost", "stopped"]
    detail: str
    stable: bool = False


class CameraReader:
    """Reads one camera on its own thread into `queue` (a FrameQueue of Frame).

    Frames: image uint8 (H, W, 3) BGR; seq counts up from 0 over the reader's
    life (across reconnects and loops); pts_ns is UTC ns on the camera
    timeline: for files the wall time at open plus the media timestamp (kept
    strictly increasing across loops), for RTSP the wall-clock capture time (the frames the decoder
    buffered at connect are skipped: LIVE_EDGE_WAIT).

    Use as a context manager; close() stops the thread promptly, except that an
    RTSP read in progress can take up to read_timeout_s to return.
    """

    def __init__(self, config: CameraConfig, on_status: StatusCallback | None = None) -> None:
        self.config = config
        # on a Jetson whose OpenCV has GStreamer, RTSP is decoded by the hardware (NVDEC)
        self._backend, self._source = choose_backend(
            config, is_jetson(), opencv_has_gstreamer(), config.codec, config.latency_ms
        )
        self.queue = FrameQueue(config.queue_size, block_when_full=config.is_file and config.replay == "fast")
        self._on_status = on_status
        self._log = structlog.get_logger().bind(camera_id=config.id)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._state = "new"
        self._seq = 0
        self._last_pts_ns = 0
        self._reconnects = 0
        self._recent_mono: collections.deque[float] = collections.deque()
        self._finished = False
        self._why_offline: tuple[float, str] | None = None  # (when asked, the reason) for this offline spell

    def __enter__(self) -> CameraReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"camera {self.config.id} already started")
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.config.id}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self.queue.close()
        if self._thread is not None:
            self._thread.join(self.config.read_timeout_s + self.config.open_timeout_s + PROBE_TIMEOUT_S + 1.0)
            if self._thread.is_alive():
                self._log.warning("camera.close_timeout")

    @property
    def alive(self) -> bool:
        """Whether the reader's thread runs (reading, or retrying a camera that is offline)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """True once a non-looping file reached its end: no frame will follow the queued ones."""
        return self._finished

    @property
    def backend(self) -> str:
        """'gstreamer' (the Jetson NVDEC pipeline) or 'ffmpeg': how this camera is decoded."""
        return self._backend

    def stats(self) -> ReaderStats:
        with self._lock:
            now = time.monotonic()
            self._trim_recent(now)
            span_s = now - self._recent_mono[0] if self._recent_mono else 0.0
            fps = (len(self._recent_mono) - 1) / span_s if len(self._recent_mono) > 1 and span_s > 0 else 0.0
            return ReaderStats(self.config.id, self._state, self._seq, self.queue.dropped, self._reconnects, fps)

    def _trim_recent(self, now_mono: float) -> None:
        """Keep only the delivery times inside the fps window (caller holds the lock)."""
        while self._recent_mono and self._recent_mono[0] < now_mono - _FPS_WINDOW_S:
            self._recent_mono.popleft()

    # -- reader thread ------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._publish("connecting", self.config.redacted_url)
            capture = self._open()
            if not capture.isOpened():
                session = _Session("lost", self._why_not_open())
            else:
                try:
                    session = self._pump(capture)
                finally:
                    capture.release()
            if session.outcome == "stopped":
                break
            if session.outcome == "ended" and not self.config.loop:
                self._finished = True
                self.queue.close()
                self._publish("ended", f"{self._seq} frames")
                break
            if session.outcome == "ended":
                self._log.info("camera.loop", frames_read=self._seq)
                continue
            # A session that outlived the longest backoff was a good run: start over from min_s.
            attempt = 0 if session.stable else attempt
            delay_s = backoff_s(attempt, self.config.reconnect_min_s, self.config.reconnect_max_s, random.random())
            attempt += 1
            self._publish("offline", session.detail, retry_in_s=round(delay_s, 3))
            if self._stop.wait(delay_s):
                break
            with self._lock:
                self._reconnects += 1
        self._log.info("camera.stopped", frames_read=self._seq, finished=self._finished)

    def _open(self) -> cv2.VideoCapture:
        if self.config.is_file:
            return cv2.VideoCapture(self.config.url, cv2.CAP_FFMPEG)
        if self._backend == "gstreamer":
            return cv2.VideoCapture(self._source, cv2.CAP_GSTREAMER, capture_timeouts(self.config))
        # OpenCV's FFmpeg backend uses RTSP over TCP (interleaved) unless
        # OPENCV_FFMPEG_CAPTURE_OPTIONS says otherwise; TCP survives the packet
        # loss that corrupts H.264 over UDP.
        return cv2.VideoCapture(self.config.url, cv2.CAP_FFMPEG, capture_timeouts(self.config))

    def _why_not_open(self) -> str:
        """Why the source did not open: asked at the first failure of an offline spell, then kept (see
        PROBE_EVERY_S); not asked once the reader is stopping."""
        now = time.monotonic()
        if self._stop.is_set():
            return _CANNOT_OPEN
        if self._why_offline is None or now - self._why_offline[0] >= PROBE_EVERY_S:
            self._why_offline = (now, cannot_open(self.config))
        return self._why_offline[1]

    def _pump(self, capture: cv2.VideoCapture) -> _Session:
        """Read frames until the source ends, fails or the reader stops."""
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        frame_ns = int(1e9 / fps) if fps > 0 else 0
        # Anchor the media clock at the wall time of opening, but never behind the
        # previous session's last frame: pts_ns stays strictly increasing when a
        # fast replay loops faster than wall time.
        anchor_ns = max(time.time_ns(), self._last_pts_ns + frame_ns)
        anchor_mono = time.monotonic()
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._publish("online", f"{width}x{height} @ {fps:.2f} fps")
        self._why_offline = None
        paced = self.config.is_file and self.config.replay == "realtime"
        last_frame_mono = anchor_mono
        # a live source skips the frames buffered at connect until a read waits for the camera (LIVE_EDGE_WAIT)
        catching_up, skipped = not self.config.is_file and frame_ns > 0, 0
        while not self._stop.is_set():
            read_mono = time.monotonic()
            ok, image = capture.read()
            if not ok or image is None:
                now = time.monotonic()
                stable = now - anchor_mono >= self.config.reconnect_max_s
                if self.config.is_file:
                    return _Session("ended", "end of file", stable)
                # as long as it was: the decoder may retry a stalled read (FFmpeg does, each for read_timeout_s)
                waited_s = now - last_frame_mono
                if waited_s < self.config.read_timeout_s:
                    return _Session("lost", "the stream ended", stable)
                return _Session("lost", f"no frame for {waited_s:.1f} s (read_timeout_s {self.config.read_timeout_s})",
                                stable)  # fmt: skip
            if self.config.is_file:
                media_ns = int(capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
                pts_ns = max(anchor_ns + media_ns, self._last_pts_ns + 1)
                due_s = anchor_mono + media_ns / 1e9 - time.monotonic()
                if paced and due_s > 0 and self._stop.wait(due_s):
                    break
            else:
                last_frame_mono = time.monotonic()  # a live stream's: what a stalled read waited since
                if catching_up:
                    waited_ns = (last_frame_mono - read_mono) * 1e9
                    if waited_ns < LIVE_EDGE_WAIT * frame_ns and skipped * frame_ns < MAX_BACKLOG_S * 1e9:
                        skipped += 1
                        continue
                    catching_up = False
                    if skipped:
                        self._log.info("camera.backlog_skipped", frames=skipped, seconds=round(skipped / fps, 1))
                pts_ns = time.time_ns()
            if not self.queue.put(Frame(self.config.id, self._seq, pts_ns, image)):
                break
            with self._lock:
                self._seq += 1
                self._last_pts_ns = pts_ns
                self._recent_mono.append(time.monotonic())
                self._trim_recent(self._recent_mono[-1])
        return _Session("stopped", "closed")

    def _publish(self, state: str, detail: str, **log_fields: object) -> None:
        with self._lock:
            self._state = state
        # offline is what a technician must notice, with the address and why; the rest is the normal course
        if state == "offline":
            self._log.warning(f"camera.{state}", url=self.config.redacted_url, detail=detail, **log_fields)
        else:
            self._log.info(f"camera.{state}", detail=detail, **log_fields)
        if self._on_status is None:
            return
        try:
            self._on_status(self.config.id, state, detail)
        except Exception:  # a faulty listener must not kill the camera thread
            self._log.exception("camera.status_callback_failed", state=state)
