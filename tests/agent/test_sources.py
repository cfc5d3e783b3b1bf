"""Camera readers: backoff, the drop-oldest queue, file replay on the real vtest.avi."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from agent.core.types import Frame
from agent.io.sources import BEHIND_WAIT_S, CameraReader, FrameQueue, backoff_s
from agent.settings import paths
from agent.settings.camera import CameraConfig, redact_urls
from agent.settings.errors import describe_validation_error
from testbed.services import free_port

VTEST_FRAMES = 795
VTEST_FRAME_NS = 100_000_000  # 10 fps


def _frame(seq: int) -> Frame:
    return Frame("cam", seq, seq * VTEST_FRAME_NS, np.zeros((2, 2, 3), np.uint8))


@pytest.mark.parametrize(
    ("attempt", "u", "expected_s"),
    [
        (0, 0.0, 1.0),  # first retry: exactly min_s
        (0, 0.99, 1.0),
        (1, 0.0, 1.0),  # ceiling 2 s, floor max(min_s, 1 s)
        (1, 0.5, 1.5),
        (2, 0.0, 2.0),  # ceiling 4 s, floor 2 s
        (2, 1.0, 4.0),
        (5, 0.0, 16.0),  # ceiling 32 s
        (6, 0.0, 30.0),  # ceiling capped at 60 s, floor 30 s
        (6, 1.0, 60.0),
        (10_000, 0.5, 45.0),  # no overflow on a camera that has been down for weeks
    ],
)
def test_backoff_table(attempt: int, u: float, expected_s: float) -> None:
    assert backoff_s(attempt, 1.0, 60.0, u) == pytest.approx(expected_s)


def test_backoff_stays_within_bounds() -> None:
    delays = [backoff_s(a, 0.2, 5.0, u) for a in range(20) for u in np.linspace(0, 1, 11)]
    assert min(delays) >= 0.2 and max(delays) <= 5.0


def test_frame_queue_drops_oldest_and_counts() -> None:
    queue = FrameQueue(2)
    for seq in range(5):
        assert queue.put(_frame(seq))
    assert queue.dropped == 3
    assert [queue.get(0).seq, queue.get(0).seq] == [3, 4]
    assert queue.get(timeout_s=0.01) is None


def test_a_live_queue_is_behind_when_its_last_frame_waited_and_a_blocking_replay_never_is() -> None:
    live, replay = FrameQueue(4), FrameQueue(4, block_when_full=True)
    for queue in (live, replay):
        queue.put(_frame(0))
        queue.put(_frame(1))
        queue.get(0)
    assert not live.behind  # taken at once
    time.sleep(BEHIND_WAIT_S + 0.02)
    for queue in (live, replay):
        queue.get(0)
    assert live.behind and not replay.behind  # frame 1 waited past half the latency budget
    live.put(_frame(2))
    live.get(0)
    assert not live.behind


def test_frame_queue_blocking_put_waits_for_room() -> None:
    queue = FrameQueue(1, block_when_full=True)
    queue.put(_frame(0))
    putter = threading.Thread(target=queue.put, args=(_frame(1),))
    putter.start()
    putter.join(0.1)
    assert putter.is_alive(), "put on a full blocking queue must wait"
    assert queue.get(1.0).seq == 0
    putter.join(1.0)
    assert queue.get(1.0).seq == 1 and queue.dropped == 0


def test_frame_queue_close_wakes_putter_and_drains() -> None:
    queue = FrameQueue(1, block_when_full=True)
    queue.put(_frame(0))
    results: list[bool] = []
    putter = threading.Thread(target=lambda: results.append(queue.put(_frame(1))))
    putter.start()
    queue.close()
    putter.join(1.0)
    assert results == [False]
    assert queue.get(1.0).seq == 0  # what was queued is still delivered
    started = time.monotonic()
    assert queue.get(5.0) is None and time.monotonic() - started < 1.0


def test_missing_file_is_a_validation_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.avi"
    with pytest.raises(ValidationError, match=str(missing)):
        CameraConfig(id="cam", url=str(missing))
    with pytest.raises(ValidationError, match=str(missing)):
        CameraConfig(id="cam", url=missing.as_uri())


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "bad id"},
        {"url": "http://example.com/cam"},
        {"url": "rtsp:///no-host"},
        {"url": "rtsp://cam.local/stream", "replay": "fast"},
        {"reconnect_min_s": 5.0, "reconnect_max_s": 1.0},
        {"queue_size": 0},
        {"fps": 10},
    ],
)
def test_bad_configs_are_rejected(fields: dict, media_dir: Path) -> None:
    with pytest.raises(ValidationError):
        CameraConfig(**{"id": "cam", "url": str(media_dir / "vtest.avi"), **fields})


def test_relative_path_resolves_against_the_config_folder(media_dir: Path) -> None:
    with paths.relative_to(media_dir):
        config = CameraConfig(id="cam", url="vtest.avi")
    assert config.url == str((media_dir / "vtest.avi").resolve()) and config.is_file


def test_rtsp_password_is_redacted() -> None:
    config = CameraConfig(id="cam", url="rtsp://admin:s3cret@10.0.0.7:554/stream1")
    assert not config.is_file and config.redacted_url == "rtsp://admin:***@10.0.0.7:554/stream1"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("rtsp://admin:pa#ss/w@cam.local/x", "rtsp://admin:***@cam.local/x"),  # unencoded # and / in it
        ("rtsp://admin:Admin@123@10.0.0.5:554/s", "rtsp://admin:***@10.0.0.5:554/s"),  # and @, as cameras' often do
        ("open rtsp://u:p@h/1 and rtsps://v:q@h:322/2 failed", "open rtsp://u:***@h/1 and rtsps://v:***@h:322/2 failed"),
        ("rtsp://cam.local:554/stream1", "rtsp://cam.local:554/stream1"),  # nothing to hide
        ("rtsp://viewer@cam.local/x", "rtsp://viewer@cam.local/x"),  # a user without a password
        # cameras that take the login in the path or query
        ("rtsp://h:554/user=admin&password=S3cr3t&channel=1", "rtsp://h:554/user=admin&password=***&channel=1"),
        ("rtsp://h/x?user=admin&PWD=s3&a=1 failed", "rtsp://h/x?user=admin&PWD=***&a=1 failed"),
        ("rtsp://h:554/user=admin_password=S3cr3t_channel=1_stream=0.sdp", "rtsp://h:554/user=admin_password=***"),
        ("rtsp://h/x?loginPassword=S3;cr3t", "rtsp://h/x?loginPassword=***"),
    ],
)
def test_every_url_password_in_a_text_is_redacted(text: str, redacted: str) -> None:
    assert redact_urls(text) == redacted


def _drain(reader: CameraReader, timeout_s: float) -> list[Frame]:
    frames = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frame = reader.queue.get(timeout_s=0.5)
        if frame is None and reader.finished:
            return frames
        if frame is not None:
            frames.append(frame)
    raise AssertionError(f"reader did not finish in {timeout_s} s ({len(frames)} frames)")


def test_fast_replay_reads_every_frame_in_order(media_dir: Path) -> None:
    statuses: list[tuple[str, str, str]] = []
    config = CameraConfig(id="plaza", url=str(media_dir / "vtest.avi"), replay="fast")
    with CameraReader(config, lambda *s: statuses.append(s)) as reader:
        frames = _drain(reader, timeout_s=60)
        stats = reader.stats()
    assert len(frames) == VTEST_FRAMES
    assert [f.seq for f in frames] == list(range(VTEST_FRAMES))
    assert frames[0].image.shape == (576, 768, 3) and frames[0].image.dtype == np.uint8
    assert not np.array_equal(frames[0].image, frames[-1].image)  # each frame owns its pixels
    gaps_ns = np.diff([f.pts_ns for f in frames])
    assert np.all(np.abs(gaps_ns - VTEST_FRAME_NS) < 1_000_000)
    assert abs(frames[0].pts_ns - time.time_ns()) < 120 * 10**9  # anchored at wall time
    assert [s[1] for s in statuses] == ["connecting", "online", "ended"]
    assert stats.frames_read == VTEST_FRAMES and stats.frames_dropped == 0 and stats.reconnects == 0


def test_fast_replay_loop_keeps_pts_increasing(media_dir: Path) -> None:
    config = CameraConfig(id="plaza", url=str(media_dir / "vtest.avi"), replay="fast", loop=True)
    with CameraReader(config) as reader:
        frames = [reader.queue.get(timeout_s=5.0) for _ in range(VTEST_FRAMES + 20)]
    assert all(f is not None for f in frames)
    assert np.all(np.diff([f.pts_ns for f in frames]) > 0)
    assert np.array_equal(frames[0].image, frames[VTEST_FRAMES].image)  # the clip restarted


def test_realtime_replay_paces_at_clip_fps(media_dir: Path) -> None:
    config = CameraConfig(id="plaza", url=str(media_dir / "vtest.avi"), replay="realtime", queue_size=100)
    with CameraReader(config) as reader:
        first = reader.queue.get(timeout_s=5.0)
        started = time.monotonic()
        frames = [reader.queue.get(timeout_s=1.0) for _ in range(20)]
        elapsed_s = time.monotonic() - started
        fps = reader.stats().fps
    assert first is not None and all(f is not None for f in frames)
    assert elapsed_s == pytest.approx(2.0, abs=0.25)
    assert fps == pytest.approx(10.0, abs=1.0)
    # Wall time and camera time move together: pts_ns gaps match the clip.
    assert (frames[-1].pts_ns - first.pts_ns) / 1e9 == pytest.approx(2.0, abs=0.01)


def test_slow_consumer_drops_oldest_in_realtime(media_dir: Path) -> None:
    config = CameraConfig(id="plaza", url=str(media_dir / "vtest.avi"), queue_size=2)
    with CameraReader(config) as reader:
        time.sleep(1.0)  # nobody reads: about 10 frames arrive for 2 slots
        frame = reader.queue.get(timeout_s=1.0)
        stats = reader.stats()
    assert stats.frames_dropped >= 6
    assert frame is not None and frame.seq >= 6  # the freshest frames survive


def test_close_interrupts_backoff_promptly(tmp_path: Path) -> None:
    clip = tmp_path / "broken.avi"
    clip.write_bytes(b"not a video")
    statuses: list[tuple[str, str, str]] = []
    config = CameraConfig(id="broken", url=str(clip), reconnect_min_s=30.0, reconnect_max_s=60.0)
    reader = CameraReader(config, lambda *s: statuses.append(s))
    reader.start()
    deadline = time.monotonic() + 5.0
    while not any(s[1] == "offline" for s in statuses) and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 1.0
    assert [s[1] for s in statuses] == ["connecting", "offline"] and not reader.finished


def test_an_rtsp_camera_on_a_jetson_opens_with_its_timeouts_through_gstreamer(monkeypatch) -> None:
    """FAKE VideoCapture and Jetson: this OpenCV has no GStreamer and this box is no Jetson. What is checked is
    what the reader asks OpenCV for (the pipeline and its timeouts); NVDEC decoding runs on a Jetson only."""
    from agent.io import sources

    opened: list[tuple] = []

    class Refusing:
        def __init__(self, *args) -> None:
            opened.append(args)

        def isOpened(self) -> bool:
            return False

        def release(self) -> None: ...

    monkeypatch.setattr(sources, "is_jetson", lambda: True)
    monkeypatch.setattr(sources, "opencv_has_gstreamer", lambda: True)
    monkeypatch.setattr(sources.cv2, "VideoCapture", Refusing)
    url = f"rtsp://127.0.0.1:{free_port()}/gate"  # nothing listens: the probe after the refused open is refused too
    config = CameraConfig(id="gate", url=url, open_timeout_s=4.0, read_timeout_s=3.0)
    with CameraReader(config) as reader:
        deadline = time.monotonic() + 10
        while not opened and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.backend == "gstreamer"
    source, api, params = opened[0]
    assert source.startswith("rtspsrc location=") and "nvv4l2decoder" in source and api == sources.cv2.CAP_GSTREAMER
    assert dict(zip(params[::2], params[1::2])) == {
        sources.cv2.CAP_PROP_OPEN_TIMEOUT_MSEC: 4000, sources.cv2.CAP_PROP_READ_TIMEOUT_MSEC: 3000
    }


@pytest.mark.parametrize("url", [
    "rtsp:/admin:S3cr3t@127.0.0.1:554/x",  # one slash: not a URL with a host
    "rtsp:/admin:S3/cr3t@127.0.0.1:554/x",  # and a / in the password
    "rtsp//admin:S3cr3t@cam.local:554/x",  # no colon: a file path
    "rtsp//admin:S3 cr3t@cam.local:554/x",  # a file path, a space in the password
    "rtsp://admin:S3 cr3t@127.0.0.1:554/x",  # a raw space
])  # fmt: skip
def test_a_mistyped_camera_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CameraConfig(id="cam", url=url)
    said = describe_validation_error(refused.value)
    assert "S3" not in said and "cr3t" not in said and "url" in said, said
