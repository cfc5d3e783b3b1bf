"""The agent's owner of what is live, running, without a broker: the real LiveControl over a
real Pipeline, on a looping file camera (or the camera at a url) ("fast" replay: the reader blocks instead of dropping,
so a lost frame shows as a gap in `seq`) and the real model.

A thin adapter for the tests that drive the owner (the OTA applier, the zone-editor save): it
records which model ran each frame (`processed`), what was audited and how often the status was
re-published; `bad_sha256` makes every detect of that model fail (a model that fails live:
the pipeline counts the errors, as it does for a broken engine); `run_detector=False` skips
inference (nothing found) where only the frame flow matters.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from agent.core.types import Detections, Frame
from agent.io.sources import CameraReader
from agent.ota.control import Baseline, ModelRef
from agent.ota.slots import SlotLayout
from agent.runtime.live import LiveControl, LiveModel, open_detector, served_setup
from agent.runtime.pipeline import FrameDetector, Pipeline
from agent.settings.config import AgentConfig
from agent.settings.zones import ZonesDoc
from agent.wire.privacy import EnvelopeBuilder
from agent.wire.topics import Topics
from testbed.pipeline import ListSink

CAMERA_ID = "cam1"
JOIN_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Processed:
    seq: int
    model_sha256: str
    detections: int


class Tap:
    """A real detector whose every batch is noted for `LiveAgent.processed`; `closed_on` names
    the thread that closed it."""

    def __init__(self, detector: FrameDetector, sha256: str, agent: LiveAgent) -> None:
        self._detector, self.sha256, self._agent = detector, sha256, agent
        self.closed_on: str | None = None

    def __getattr__(self, name: str) -> Any:  # last_timings_s, manifest, nms_iou...: the real detector's
        return getattr(self._detector, name)

    def detect(self, images: list, sizes_wh: list | None = None) -> list[Detections]:
        agent = self._agent
        time.sleep(agent.frame_interval_s)
        if self.sha256 == agent.bad_sha256:
            raise RuntimeError("a model that fails live")
        if agent.run_detector:
            found = self._detector.detect(images, sizes_wh)
        else:
            found = [Detections.empty()] * len(images)
        agent.ran.put((self.sha256, [len(d.confidence) for d in found]))
        return found

    def close(self) -> None:
        self.closed_on = threading.current_thread().name
        self._detector.close()


class LiveAgent:
    """A context manager: the frame loop runs in its own thread between enter and exit.

    What it serves at start comes from `served_setup(layout, baseline)`, as in the agent;
    `zones_file` (optional) is the zones file the owner keeps matching what is committed.
    """

    def __init__(
        self,
        clip: Path | str,
        baseline: Baseline,
        layout: SlotLayout | None = None,
        zones_file: Path | None = None,
        run_detector: bool = True,
        bad_sha256: str = "",
        frame_interval_s: float = 0.02,
    ) -> None:
        if zones_file is not None and not zones_file.exists():
            zones_file.write_text(yaml.safe_dump(baseline.zones.model_dump(mode="json"), sort_keys=False))
        self.config = AgentConfig(
            device_id="test-box",
            site="site",
            model={"manifest": baseline.model.manifest_path},
            models_dir=baseline.model.models_dir,
            zones_file=zones_file,
            cameras=[{"id": CAMERA_ID, "url": str(clip), **({} if "://" in str(clip) else {"replay": "fast", "loop": True})}],
        )
        self.run_detector, self.bad_sha256, self.frame_interval_s = run_detector, bad_sha256, frame_interval_s
        self.processed: list[Processed] = []
        self.audited: list[tuple[str, str, dict[str, Any]]] = []
        self.status_publications = 0
        self.opened: list[Tap] = []  # every detector the owner opened, in order
        self.ran: queue.SimpleQueue[tuple[str, list[int]]] = queue.SimpleQueue()
        self._reader: CameraReader | None = CameraReader(self.config.cameras[0])
        self._stop, self._stopping = threading.Event(), threading.Event()
        make_pipeline = partial(
            Pipeline, [self._reader], envelopes=EnvelopeBuilder("test-box", "0123456789abcdef", b"k" * 32),
            topics=Topics("site", "test-box"), sink=ListSink(), on_frame=self._on_frame,
        )  # fmt: skip
        self.control = LiveControl(
            self.config, served_setup(layout, baseline), baseline.zones, make_pipeline, self._audit,
            self._publish_status, layout, self._stopping, opener=self._open,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._run, name="frame-loop", daemon=True)

    def __enter__(self) -> LiveAgent:
        assert self._reader is not None
        self._reader.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_loop()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
            self.control.close()

    def stop_loop(self) -> None:
        """End the frame loop (no frame boundary comes after this)."""
        self._stop.set()
        self._thread.join(JOIN_TIMEOUT_S)

    def _run(self) -> None:
        try:
            self.control.pipeline.run(self._stop)
        finally:
            self._stopping.set()

    def _open(self, config: AgentConfig, ref: ModelRef, zones: ZonesDoc) -> tuple[FrameDetector, LiveModel]:
        detector, model = open_detector(config, ref, zones)
        self.opened.append(Tap(detector, model.sha256, self))
        return self.opened[-1], model

    def _on_frame(self, frames: list[Frame]) -> None:
        # the detect of this batch: batches are analysed in order, and every frame is detected
        # (the camera's default `detect` settings)
        sha256, counts = self.ran.get_nowait()
        self.processed.extend(Processed(f.seq, sha256, n) for f, n in zip(frames, counts))

    def _audit(self, actor: str, action: str, **details: Any) -> bool:
        self.audited.append((actor, action, details))
        return True

    def _publish_status(self) -> None:
        self.status_publications += 1
