"""The frame loop: camera queues -> batched detector -> per-camera tracker and
rules -> envelopes -> outbox. The outbox is its only hand-off.

Two threads: the loop thread reads and detects; the analytics thread tracks,
runs the rules and writes the outbox, one batch behind (a one-slot queue
between them). ONNX Runtime releases the GIL, so the Python stages of batch k
run while batch k+1 is in inference.

Zones, the detector and the tracker settings change only at a frame boundary,
when the owner of the live setup (agent/runtime/live.py) asks: a swap is
prepared on the caller's thread (rules are built there, so a bad document
fails before anything changes), handed over under a lock, installed by the
loop thread between two batches, and passed down the queue in order, so the
analytics thread switches rules and trackers exactly between the last batch of
the old setup and the first of the new: no frame is processed half by the old
and half by the new setup and no frame is skipped."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import structlog

from agent.analytics.aggregates import Aggregator
from agent.analytics.analyzers.downscale import downscale
from agent.analytics.camera import CameraRules, build_rules
from agent.core.events import Event
from agent.core.tracker import ByteTracker, TrackerConfig
from agent.core.types import Detections, Frame
from agent.core.units import NS_PER_MS
from agent.io.live_view import LiveView
from agent.io.metrics import StageTimer
from agent.io.outbox import EventRow, EventSink
from agent.io.sources import CameraReader
from agent.runtime import tiles
from agent.runtime.scheduler import DetectScheduler, grey_region
from agent.settings.zones import ZonesDoc
from agent.wire.envelope import encode
from agent.wire.privacy import EnvelopeBuilder
from agent.wire.topics import Topics

log = structlog.get_logger(__name__)

IDLE_WAIT_S = 0.005
HANDOFF_POLL_S = 0.5
_DONE = object()  # the end of the hand-off queue


class FrameDetector(Protocol):
    last_timings_s: dict[str, float]

    def detect(self, images: list, sizes_wh: list | None = None) -> list[Detections]: ...

    def close(self) -> None: ...


@dataclass
class _Camera:
    reader: CameraReader
    tracker: ByteTracker
    rules: CameraRules
    aggregator: Aggregator | None = None  # aggregates-only mode: rule events never leave the box


@dataclass
class PipelineStats:
    frames: int = 0
    detected: int = 0  # frames that went through the detector (the others got the tracker's predictions)
    events: int = 0
    errors: int = 0  # batches whose detection failed (their frames are dropped); the OTA health window reads it


@dataclass(frozen=True)
class _Setup:
    """What the loop runs with; a swap replaces some of it."""

    detector: FrameDetector
    class_names: list[str]
    class_map: dict[str, str]
    zones: ZonesDoc
    tracker_config: TrackerConfig


@dataclass
class _Swap:
    """A setup waiting for the next frame boundary, the rules built for it, and who waits for it."""

    setup: _Setup
    rules: dict[str, CameraRules]
    new_trackers: bool  # a new detector or tracker config: class ids and tracks change meaning, end them all
    applied: list[threading.Event] = field(default_factory=list)


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
        on_frame: Callable[[list[Frame]], None] = lambda frames: None,
        aggregate_interval_s: dict[str, int] | None = None,
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_frame`: called on the analytics thread with each batch analysed; `on_idle`: on the loop
        thread each time it finds no frame while every camera's reader runs (cameras quiet, or offline and
        retrying: waiting, not hung).
        `aggregate_interval_s`: camera id -> interval, for the cameras in aggregates-only mode."""
        self._live = _Setup(detector, class_names, class_map, zones, tracker_config)
        self._analysed_names = class_names  # the analytics thread's: its batches' model, as installed in order
        self._envelopes = envelopes
        self._topics = topics
        self._sink = sink
        self._on_frame = on_frame
        self._on_idle = on_idle
        intervals = aggregate_interval_s or {}
        self._cameras = {
            r.config.id: _Camera(
                r,
                ByteTracker(tracker_config, r.config.id),
                build_rules(zones, r.config.id, class_names, class_map),
                Aggregator(intervals[r.config.id]) if r.config.id in intervals else None,
            )
            for r in readers
        }
        self._target = self._live  # the live setup plus every swap requested so far
        self._pending: _Swap | None = None
        self._lock = threading.Lock()  # the hand-off between requesters and the loop
        self._request_lock = threading.Lock()  # one request at a time: each builds on the last target
        self._latest: dict[str, np.ndarray] = {}
        self.live_view = LiveView()  # tracks and events of the moment, for the local zone editor only
        self._failure: BaseException | None = None  # what ended the analytics thread, re-raised by `run`
        self._scheduler = DetectScheduler({r.config.id: r.config.detect for r in readers})
        self.zones_version = zones.version
        self.timer = StageTimer()
        self.stats = PipelineStats()

    @property
    def detector(self) -> FrameDetector:
        """The detector in use now (`close` closes it after `run`)."""
        return self._live.detector

    def latest_image(self, camera_id: str) -> np.ndarray | None:
        """The last frame processed for a camera: BGR uint8 (H, W, 3), never modified; None before the first.
        For the local zone editor only: the image never leaves the box."""
        return self._latest.get(camera_id)

    def swap(self, **changes: Any) -> threading.Event:
        """Use the changed parts of the setup (`detector`, `class_names`, `class_map`, `zones`,
        `tracker_config`) from the next frame boundary on; the event is set once they are live.

        The hand-off only: what to swap is decided by the owner of the live setup
        (agent/runtime/live.py). Rules are built here, so a document that does not fit the
        classes fails now (ValueError) and changes nothing. A new detector or tracker config
        starts every tracker afresh. A detector handed over is the pipeline's from then on: it
        is closed here (`_retire`), the replaced one by the loop thread at the boundary, so it
        is never closed in the middle of a detect.
        """
        new_trackers = "detector" in changes or "tracker_config" in changes
        with self._request_lock:
            target = replace(self._target, **changes)
            try:
                rules = {cid: build_rules(target.zones, cid, target.class_names, target.class_map) for cid in self._cameras}
            except BaseException:
                if "detector" in changes:
                    self._retire(changes["detector"])
                raise
            applied = threading.Event()
            with self._lock:
                earlier = self._pending
                swap = _Swap(target, rules, new_trackers, [applied])
                if earlier is not None:  # not installed yet: this swap carries it along
                    swap.new_trackers |= earlier.new_trackers
                    swap.applied[:0] = earlier.applied
                self._pending, self._target = swap, target
        if earlier is not None and earlier.setup.detector is not target.detector:
            self._retire(earlier.setup.detector)  # replaced before it ever ran
        return applied

    def withdraw(self, applied: threading.Event) -> bool:
        """Cancel the pending swap that `applied` waits for, if the loop has not installed it yet (True then).
        Used when the loop does not reach a boundary in time; a withdrawn detector is closed."""
        with self._lock:
            if self._pending is None or applied not in self._pending.applied:
                return False
            withdrawn, self._pending, self._target = self._pending, None, self._live
        self._retire(withdrawn.setup.detector)
        return True

    def close(self) -> None:
        """Close the detector in use, once `run` has returned (and a swap still pending, if any)."""
        with self._lock:
            pending, self._pending, self._target = self._pending, None, self._live
        if pending is not None:
            self._retire(pending.setup.detector)
        self._retire(self._live.detector, last=True)

    def _retire(self, detector: FrameDetector, last: bool = False) -> None:
        """The one place a detector is closed: one handed over that will not (or no longer) run,
        or, with `last`, the live one when the pipeline closes."""
        if last or detector is not self._live.detector:
            detector.close()

    def run(self, stop: threading.Event, duration_s: float | None = None) -> PipelineStats:
        deadline = None if duration_s is None else time.monotonic() + duration_s
        handoff: queue.Queue = queue.Queue(maxsize=1)
        analytics = threading.Thread(target=self._analytics_loop, args=(handoff,), name="analytics", daemon=True)
        analytics.start()
        try:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                swap = self._apply_pending()
                if swap is not None:
                    self._hand_over(handoff, swap)
                frames = self._next_frames()
                if not frames:
                    if all(c.reader.finished and len(c.reader.queue) == 0 for c in self._cameras.values()):
                        break
                    if self._failure is not None:  # the analytics thread died while no frame came
                        raise self._failure
                    if all(c.reader.alive or c.reader.finished for c in self._cameras.values()):
                        self._on_idle()  # waiting on cameras whose readers run (a dead reader is not waited on)
                    continue
                for batch in self._detect(frames):
                    self._hand_over(handoff, batch)
        finally:
            self._hand_over(handoff, _DONE)
            analytics.join()
        if self._failure is not None:
            raise self._failure
        self._flush_aggregates()
        return self.stats

    def _hand_over(self, handoff: queue.Queue, item: object) -> None:
        """Queue for the analytics thread, waiting while it is a batch behind; if it died, raise its error."""
        while True:
            if self._failure is not None:
                if item is _DONE:
                    return
                raise self._failure
            try:
                handoff.put(item, timeout=HANDOFF_POLL_S)
                return
            except queue.Full:
                continue

    def _analytics_loop(self, handoff: queue.Queue) -> None:
        try:
            while (item := handoff.get()) is not _DONE:
                if isinstance(item, _Swap):
                    self._install(item)
                else:
                    self._analyse(*item)
        except BaseException as e:  # noqa: BLE001 - handed to `run`, which re-raises it on the loop thread
            log.exception("analytics_failed")
            self._failure = e

    def _rows(self, events: list[Event]) -> list[EventRow]:
        """Outbox rows (event_id, topic, payload) of rule events."""
        envelopes = [self._envelopes.build(e) for e in events]
        return [(e.event_id, self._topics.event(e.kind), encode(e)) for e in envelopes]

    def _flush_aggregates(self) -> None:
        """On stop, the unfinished interval of every aggregates-only camera goes out too."""
        events = [
            Event(cid, body.start_ms * NS_PER_MS, body)
            for cid, camera in self._cameras.items()
            if camera.aggregator is not None
            for body in camera.aggregator.flush()
        ]
        rows = self._rows(events)
        self._sink.put(rows)
        self.stats.events += len(rows)

    def not_streaming(self) -> dict[str, str]:
        """The cameras whose reader is not online now, with its state (offline, connecting, ended, ...)."""
        states = {cid: camera.reader.stats().state for cid, camera in self._cameras.items()}
        return {cid: state for cid, state in states.items() if state != "online"}

    def _apply_pending(self) -> _Swap | None:
        """The frame boundary on the loop thread: detect with the requested setup from the next batch on.
        Returns the swap, which the analytics thread installs in turn (`_install`)."""
        with self._lock:
            swap, self._pending = self._pending, None
        if swap is None:
            return None
        old, self._live = self._live, swap.setup
        self._retire(old.detector)  # every batch it detected is already on its way
        return swap

    def _install(self, swap: _Swap) -> None:
        """The same boundary on the analytics thread: rules and trackers of the new setup."""
        new = swap.setup
        self._analysed_names = new.class_names
        for cid, camera in self._cameras.items():
            camera.rules = swap.rules[cid]
            if swap.new_trackers:
                camera.tracker = ByteTracker(new.tracker_config, cid)
        self.zones_version = new.zones.version
        log.info("setup_applied", zones_version=new.zones.version, new_trackers=swap.new_trackers)
        for applied in swap.applied:
            applied.set()

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

    def detect_fps(self) -> dict[str, float]:
        """Detections per second of each camera over the last few seconds (health)."""
        return self._scheduler.detect_fps()

    def _detect(self, frames: list[Frame]) -> Iterator[tuple[list[Frame], list[Detections | None], list]]:
        """Batches for the analytics thread: first the frames whose boxes the tracker predicts (None),
        so they need not wait for inference, then those the scheduler picked, each detected on its
        camera's region. A camera has one frame here, so its frames stay in order. The analysis
        downscales made for motion gating go along."""
        scheduler, cameras = self._scheduler, [self._cameras[f.camera_id] for f in frames]
        regions = [scheduler.region(f.camera_id, self._live.zones, f.size_wh) for f in frames]
        fresh = [c.rules.needs_fresh_boxes for c in cameras]
        smalls = [
            downscale(f.image, c.rules.width_px) if scheduler.wants_downscale(f.camera_id, f.pts_ns, fr) else None
            for f, c, fr in zip(frames, cameras, fresh)
        ]
        chosen = scheduler.choose(
            frames,
            [None if s is None else grey_region(s, r, f.size_wh) for f, s, r in zip(frames, smalls, regions)],
            fresh=fresh,
            has_tracks=[len(c.tracker) > 0 for c in cameras],
            behind=any(c.reader.queue.behind for c in cameras),  # of the frames just taken, not a quiet camera
        )
        predicted = [i for i in range(len(frames)) if i not in chosen]
        if predicted:
            yield [frames[i] for i in predicted], [None] * len(predicted), [smalls[i] for i in predicted]
        if not chosen:
            return
        detector = self._live.detector
        try:
            # a camera with dense zones is detected on their tiles too (crowd_density's crowded mode)
            found = tiles.detect(
                detector,
                [(frames[i].image, regions[i], cameras[i].rules.tiles) for i in chosen],
                [cameras[i].reader.config.detect.input_size_wh for i in chosen],
            )
        except Exception:
            # One bad batch must not end the loop; the count shows on health and fails an OTA health window.
            log.exception("detect_failed", cameras=[frames[i].camera_id for i in chosen])
            self.stats.errors += 1
            return
        for stage, seconds in detector.last_timings_s.items():
            self.timer.add(stage, seconds)
        scheduler.measured(sum(detector.last_timings_s.values()), len(chosen))
        self.stats.detected += len(chosen)
        yield [frames[i] for i in chosen], found, [smalls[i] for i in chosen]

    def _analyse(self, frames: list[Frame], detections: list[Detections | None], smalls: list) -> None:
        rows: list[EventRow] = []
        for frame, dets, small in zip(frames, detections, smalls):
            camera = self._cameras[frame.camera_id]
            self._latest[frame.camera_id] = frame.image
            t0 = time.perf_counter()
            if dets is None:
                tracks = camera.tracker.predict(frame.pts_ns, frame.size_wh)
            else:
                tracks = replace(camera.tracker.update(dets, frame.pts_ns, frame.size_wh), seen=dets)
            t1 = time.perf_counter()
            events = camera.rules.update(tracks, frame, small)
            self.live_view.record(tracks, events, self._analysed_names)
            if camera.aggregator is not None:
                bodies = camera.aggregator.update(events, frame.pts_ns)
                events = [Event(frame.camera_id, body.start_ms * NS_PER_MS, body) for body in bodies]
            rows.extend(self._rows(events))
            self.timer.add("tracking", t1 - t0)
            self.timer.add("rules", time.perf_counter() - t1)
        t2 = time.perf_counter()
        self._sink.put(rows)
        self.timer.add("publish", time.perf_counter() - t2)
        self.stats.frames += len(frames)
        self.stats.events += len(rows)
        self._on_frame(frames)
