"""Pipeline swaps at a frame boundary and detect errors, on the real clip through a real CameraReader;
the detector is scripted (it records its frames and can fail on purpose), and the live config patch rules."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agent.core.tracker import TrackerConfig
from agent.core.types import Detections
from agent.io.sources import CameraReader
from agent.runtime.pipeline import Pipeline
from agent.settings.camera import CameraConfig
from agent.settings.config import AgentConfig, ConfigError
from agent.settings.patch import check_live_keys, patched_config
from agent.settings.zones import ZonesDoc
from agent.wire.privacy import EnvelopeBuilder
from agent.wire.topics import Topics
from testbed.pipeline import ListSink
from testbed.services import free_port

CAMERA = "cam"
FRAMES = 40
WHOLE = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


class ScriptedDetector:
    """Finds nothing; records the seq of every frame it saw, raises on the `fail_on`-th call, notes where it closed.

    Not the model: the swap's order (which frame went to which detector, a failure at an exact call) must be
    scripted to be asserted; the swap on the real yolox_nano is test_live.py's."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.last_timings_s: dict[str, float] = {}
        self.calls = 0
        self.fail_on = fail_on
        self.closed_on: str | None = None

    def detect(self, images: list, sizes_wh: list | None = None) -> list[Detections]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("a broken engine")
        empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
        return [empty for _ in images]

    def close(self) -> None:
        self.closed_on = threading.current_thread().name


def make_pipeline(clip: Path, detector: ScriptedDetector, stop: threading.Event) -> tuple[Pipeline, CameraReader]:
    reader = CameraReader(CameraConfig(id=CAMERA, url=str(clip), replay="fast"))
    pipeline = Pipeline(
        [reader], detector, ["person"], {}, ZonesDoc(), TrackerConfig(),
        EnvelopeBuilder("dev", "0123456789abcdef", b"k" * 32), Topics("site", "dev"), ListSink(),
        on_frame=lambda frames: stop.set() if pipeline.stats.frames >= FRAMES else None,
    )  # fmt: skip
    return pipeline, reader


def run_in_thread(pipeline: Pipeline, reader: CameraReader, stop: threading.Event) -> threading.Thread:
    reader.start()
    loop = threading.Thread(target=pipeline.run, args=(stop,), name="frame-loop")
    loop.start()
    return loop


def test_a_failing_detect_is_counted_and_the_loop_goes_on(media_dir: Path) -> None:
    stop = threading.Event()
    detector = ScriptedDetector(fail_on=3)
    pipeline, reader = make_pipeline(media_dir / "vtest.avi", detector, stop)
    with reader:
        stats = pipeline.run(stop)
    # every frame detected is analysed, even the batch in flight when the stop came
    assert stats.errors == 1 and stats.frames == detector.calls - 1 >= FRAMES
    assert pipeline.latest_image(CAMERA).shape == (576, 768, 3)


def test_swap_detector_installs_at_a_boundary_and_closes_the_old_one_on_the_loop_thread(media_dir: Path) -> None:
    stop = threading.Event()
    old, new = ScriptedDetector(), ScriptedDetector()
    pipeline, reader = make_pipeline(media_dir / "vtest.avi", old, stop)
    zones = ZonesDoc(version=2, zones=[{"id": "z", "camera": CAMERA, "polygon": WHOLE, "occupancy": {}}])
    loop = run_in_thread(pipeline, reader, stop)
    try:
        while pipeline.stats.frames < 5:  # mid-run
            time.sleep(0.005)
        applied = pipeline.swap(detector=new, class_names=["person"], class_map={}, tracker_config=TrackerConfig(), zones=zones)
        assert applied.wait(10)
    finally:
        stop.set()
        loop.join(10)
        reader.close()
    assert pipeline.detector is new and pipeline.zones_version == 2
    assert old.closed_on == "frame-loop" and new.closed_on is None
    assert old.calls + new.calls == pipeline.stats.frames and old.calls >= 5 and new.calls > 0  # each frame ran on one


def test_a_swap_the_loop_never_reached_is_withdrawn(media_dir: Path) -> None:
    stop = threading.Event()
    old, new = ScriptedDetector(), ScriptedDetector()
    pipeline, _ = make_pipeline(media_dir / "vtest.avi", old, stop)
    applied = pipeline.swap(detector=new, class_names=["person"], class_map={}, tracker_config=TrackerConfig())
    assert pipeline.withdraw(applied) and not pipeline.withdraw(applied)
    assert pipeline.detector is old and not applied.is_set()


def test_rules_that_do_not_build_change_nothing(media_dir: Path) -> None:
    stop = threading.Event()
    pipeline, _ = make_pipeline(media_dir / "vtest.avi", ScriptedDetector(), stop)
    cars = ZonesDoc(version=3, zones=[{"id": "z", "camera": CAMERA, "polygon": WHOLE, "classes": ["car"]}])
    with pytest.raises(ValueError):
        pipeline.swap(zones=cars)  # the model has no car class
    assert pipeline.withdraw(threading.Event()) is False  # nothing pending


def test_a_config_patch_merges_and_only_live_keys_pass(tmp_path: Path, media_dir: Path, repo_dir: Path) -> None:
    base = AgentConfig(
        device_id="dev", site="site", model={"manifest": repo_dir / "models" / "yolox_nano.json"},
        cameras=[{"id": CAMERA, "url": str(media_dir / "vtest.avi")}],
    )  # fmt: skip
    patched = patched_config(base, {"model": {"confidence": 0.5}})
    assert patched.model.confidence == 0.5 and patched.model.manifest == base.model.manifest
    check_live_keys({"model": {"confidence": 0.5}, "tracker": {}})
    for refused in ({"broker": {"port": 1884}}, {"model": {"manifest": "x.json"}}, {"state_dir": str(tmp_path)}):
        with pytest.raises(ConfigError):
            check_live_keys(refused)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the reader made to die
@pytest.mark.parametrize("reader_dies", [False, True], ids=["camera offline, retrying", "camera reader died"])
def test_the_loop_beats_while_waiting_on_a_camera_only_while_its_reader_runs(reader_dies: bool, monkeypatch) -> None:
    """An offline camera (nothing listens at its address) is waited on: the loop beats systemd's watchdog. A reader
    whose thread died (here made to raise: no real fault does it on demand) is not: the beats stop, and systemd
    restarts the agent."""
    if reader_dies:
        monkeypatch.setattr(CameraReader, "_open", lambda self: (_ for _ in ()).throw(RuntimeError("a reader bug")))
    reader = CameraReader(CameraConfig(id=CAMERA, url=f"rtsp://127.0.0.1:{free_port()}/cam", reconnect_min_s=5.0))
    beats: list[float] = []
    pipeline = Pipeline(
        [reader], ScriptedDetector(), ["person"], {}, ZonesDoc(), TrackerConfig(),
        EnvelopeBuilder("dev", "0123456789abcdef", b"k" * 32), Topics("site", "dev"), ListSink(),
        on_idle=lambda: beats.append(time.monotonic()),
    )  # fmt: skip
    with reader:
        time.sleep(0.5)  # the reader has failed its first open (refused at once), or died
        start = time.monotonic()
        pipeline.run(threading.Event(), duration_s=1.0)
    late = [t for t in beats if t >= start + 0.2]  # a dead reader may be seen alive for an instant at start
    assert (len(late) == 0) if reader_dies else (len(late) > 10), len(late)
    assert reader.alive is False  # closed
