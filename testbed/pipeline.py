"""Run a real clip through the real pipeline (reader, detector, tracker, rules,
envelopes) into a list, without a broker: for tests that check what the
analytics make of real footage."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.core.tracker import TrackerConfig
from agent.io.sources import CameraReader
from agent.runtime.app import watched_classes
from agent.runtime.pipeline import Pipeline
from agent.settings.camera import CameraConfig
from agent.settings.detect import DetectSettings
from agent.settings.zones import ZonesDoc
from agent.wire.envelope import Envelope
from agent.wire.privacy import EnvelopeBuilder
from agent.wire.topics import Topics
from engines.detector import Detector
from engines.manifest import load_manifest
from testbed.detections_cache import CachedDetector, cache_path

REPO = Path(__file__).resolve().parents[1]
YOLOX = REPO / "models" / "yolox_nano.json"


class ListSink:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, bytes]] = []

    def put(self, items: list[tuple[str, str, bytes]]) -> None:
        self.rows.extend(items)


@dataclass
class ClipRun:
    envelopes: list[Envelope]
    frames: int
    pipeline: Pipeline
    first_pts_ns: int  # of the clip's first frame: event times relative to the clip

    def t_s(self, envelope: Envelope) -> float:
        """The envelope's time in seconds from the clip's first frame."""
        return (envelope.ts - self.first_pts_ns // 1_000_000) / 1000.0

    def bodies(self, kind: str) -> list:
        return [e.body for e in self.envelopes if e.kind == kind]


def run_clip(
    clip: Path,
    zones: ZonesDoc | dict,
    models_dir: Path,
    manifest: Path = YOLOX,
    camera_id: str = "cam",
    tracker: TrackerConfig | None = None,
    confidence: float = 0.3,
    class_map: dict[str, str] | None = None,
    cache_dir: Path | None = None,
    detect: DetectSettings | None = None,
) -> ClipRun:
    """Replay `clip` as fast as the pipeline goes (no frame dropped) and collect its events.
    With `cache_dir`, the model's detections of the clip are kept there and read back by later runs
    (every frame detected only: the cache is by frame order). `detect`: the camera's detect settings."""
    if cache_dir is not None and detect is not None:
        raise ValueError("cache_dir holds the detections of every frame: it cannot serve a run with detect settings")
    zones = zones if isinstance(zones, ZonesDoc) else ZonesDoc.model_validate(zones)
    m = load_manifest(manifest)
    cmap = m.class_map if class_map is None else class_map
    sink = ListSink()
    reader = CameraReader(CameraConfig(id=camera_id, url=str(clip), replay="fast", detect=detect or DetectSettings()))
    first_pts_ns: list[int] = []
    put = reader.queue.put

    def put_recording(frame, *a, **k):
        if not first_pts_ns:
            first_pts_ns.append(frame.pts_ns)
        return put(frame, *a, **k)

    reader.queue.put = put_recording  # type: ignore[method-assign]
    classes = watched_classes(zones, m.classes, cmap) or None
    sizes_wh = [] if detect is None or detect.input_size_wh is None else [detect.input_size_wh]
    with Detector.open(manifest, models_dir, confidence=confidence, class_names=classes, sizes_wh=sizes_wh) as detector, \
         reader:  # fmt: skip
        cached = None if cache_dir is None else CachedDetector(detector, cache_path(cache_dir, clip, m.sha256, confidence, classes))
        pipeline = Pipeline(
            [reader],
            cached or detector,
            m.classes,
            cmap,
            zones,
            tracker or TrackerConfig(),
            EnvelopeBuilder("test-dev", "0123456789abcdef", b"k" * 32),
            Topics("site", "test-dev"),
            sink,
        )
        stats = pipeline.run(threading.Event())
        if cached is not None:
            cached.save()
    envelopes = [Envelope.model_validate(json.loads(payload)) for _, _, payload in sink.rows]
    return ClipRun(envelopes, stats.frames, pipeline, first_pts_ns[0] if first_pts_ns else 0)
