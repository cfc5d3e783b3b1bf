"""The frame loop: camera queues -> batched detector -> per-camera tracker and
rules -> envelopes -> outbox. One thread; the outbox is its only hand-off."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import structlog

from agent.aggregates import Aggregator
from agent.events import Event, encode
from agent.metrics import StageTimer
from agent.privacy import EnvelopeBuilder
from agent.rules.camera import CameraRules
from agent.sources import CameraReader
from agent.topics import Topics
from agent.tracker import ByteTracker, TrackerConfig
from agent.types import Detections, Frame
from agent.zones import ZonesDoc, build_rules

log = structlog.get_logger(__name__)

IDLE_WAIT_S = 0.005


class FrameDetector(Protocol):
    last_timings_s: dict[str, float]

    def detect(self, images: list) -> list[Detections]: ...


class EventSink(Protocol):
    def put(self, items: list[tuple[str, str, bytes]]) -> None: ...


@dataclass
class _Camera:
    reader: CameraReader
    tracker: ByteTracker
    rules: CameraRules
    aggregator: Aggregator | None = None  # aggregates-only mode: rule events never leave the box


@dataclass
class PipelineStats:
    frames: int = 0
    events: int = 0


class Pipeline:
    """Runs until stopped, until `duration_s`, or until every camera has ended."""

    def __init__(
        self,
        readers: list[CameraReader],
        detector: FrameDetector,
        class_names: list[str],
        class_map: dict[str, str],
        zones: ZonesDoc,
        tracker_config: TrackerConfig,
        envelopes: EnvelopeBuilder,
        topics: Topics,
        sink: EventSink,
        on_frame: Callable[[], None] = lambda: None,
        aggregate_interval_s: dict[str, int] | None = None,
    ) -> None:
        """`aggregate_interval_s`: camera id -> interval, for the cameras in aggregates-only mode."""
        self._detector = detector
        self._class_names = class_names
        self._class_map = class_map
        self._envelopes = envelopes
        self._topics = topics
        self._sink = sink
        self._on_frame = on_frame
        intervals = aggregate_interval_s or {}
        self._cameras = {
            r.config.id: _Camera(
                r,
                ByteTracker(tracker_config, r.config.id),
                self._rules_for(zones, r.config.id),
                Aggregator(intervals[r.config.id]) if r.config.id in intervals else None,
            )
            for r in readers
        }
        self._pending_zones: tuple[ZonesDoc, dict[str, CameraRules]] | None = None
        self._lock = threading.Lock()
        self.zones_version = zones.version
        self.timer = StageTimer()
        self.stats = PipelineStats()

    def _rules_for(self, zones: ZonesDoc, camera_id: str) -> CameraRules:
        return build_rules(zones, camera_id, self._class_names, self._class_map)

    def swap_zones(self, zones: ZonesDoc) -> None:
        """Use new zones from the next frame boundary on (rules are built here, so errors surface now)."""
        rules = {cid: self._rules_for(zones, cid) for cid in self._cameras}
        with self._lock:
            self._pending_zones = (zones, rules)

    def run(self, stop: threading.Event, duration_s: float | None = None) -> PipelineStats:
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self._apply_pending_zones()
            frames = self._next_frames()
            if not frames:
                if all(c.reader.finished and len(c.reader.queue) == 0 for c in self._cameras.values()):
                    break
                continue
            self._process(frames)
        self._flush_aggregates()
        return self.stats

    def _rows(self, events: list[Event]) -> list[tuple[str, str, bytes]]:
        """Outbox rows (event_id, topic, payload) of rule events."""
        envelopes = [self._envelopes.build(e) for e in events]
        return [(e.event_id, self._topics.event(e.kind), encode(e)) for e in envelopes]

    def _flush_aggregates(self) -> None:
        """On stop, the unfinished interval of every aggregates-only camera goes out too."""
        events = [
            Event(cid, body.start_ms * 1_000_000, body)
            for cid, camera in self._cameras.items()
            if camera.aggregator is not None
            for body in camera.aggregator.flush()
        ]
        rows = self._rows(events)
        self._sink.put(rows)
        self.stats.events += len(rows)

    def _apply_pending_zones(self) -> None:
        with self._lock:
            pending, self._pending_zones = self._pending_zones, None
        if pending is None:
            return
        zones, rules = pending
        for cid, camera in self._cameras.items():
            camera.rules = rules[cid]
        self.zones_version = zones.version
        log.info("zones_applied", version=zones.version)

    def _next_frames(self) -> list[Frame]:
        """At most one frame per camera: whatever is ready now, else wait briefly on one queue."""
        frames = [f for c in self._cameras.values() if (f := c.reader.queue.get(timeout_s=0)) is not None]
        if frames:
            return frames
        for camera in self._cameras.values():
            if not camera.reader.finished:
                frame = camera.reader.queue.get(timeout_s=IDLE_WAIT_S)
                return [] if frame is None else [frame]
        return []

    def _process(self, frames: list[Frame]) -> None:
        detections = self._detector.detect([f.image for f in frames])
        for stage, seconds in self._detector.last_timings_s.items():
            self.timer.add(stage, seconds)
        rows: list[tuple[str, str, bytes]] = []
        for frame, dets in zip(frames, detections):
            camera = self._cameras[frame.camera_id]
            t0 = time.perf_counter()
            tracks = camera.tracker.update(dets, frame.pts_ns, frame.size_wh)
            t1 = time.perf_counter()
            events = camera.rules.update(tracks, frame)
            if camera.aggregator is not None:
                bodies = camera.aggregator.update(events, frame.pts_ns)
                events = [Event(frame.camera_id, body.start_ms * 1_000_000, body) for body in bodies]
            rows.extend(self._rows(events))
            self.timer.add("tracking", t1 - t0)
            self.timer.add("rules", time.perf_counter() - t1)
        t2 = time.perf_counter()
        self._sink.put(rows)
        self.timer.add("publish", time.perf_counter() - t2)
        self.stats.frames += len(frames)
        self.stats.events += len(rows)
        self._on_frame()
