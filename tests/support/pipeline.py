"""Run a real clip through the real pipeline (reader, detector, tracker, rules,
envelopes) into a list, without a broker: for tests that check what the
analytics make of real footage."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.runtime.app import watched_classes
from agent.core.events import Envelope
from agent.runtime.pipeline import Pipeline
from agent.wire.privacy import EnvelopeBuilder
from agent.io.sources import CameraConfig, CameraReader
from agent.wire.topics import Topics
from agent.core.tracker import TrackerConfig
from agent.settings.zones import ZonesDoc
from engines.detector import Detector
from engines.manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]
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
) -> ClipRun:
    """Replay `clip` as fast as the pipeline goes (no frame dropped) and collect its events."""
    zones = zones if isinstance(zones, ZonesDoc) else ZonesDoc.model_validate(zones)
    m = load_manifest(manifest)
    cmap = m.class_map if class_map is None else class_map
    sink = ListSink()
    reader = CameraReader(CameraConfig(id=camera_id, url=str(clip), replay="fast"))
    with Detector.open(
        manifest, models_dir, confidence=confidence, class_names=watched_classes(zones, m.classes, cmap) or None
    ) as detector, reader:
        pipeline = Pipeline(
            [reader],
            detector,
            m.classes,
            cmap,
            zones,
            tracker or TrackerConfig(),
            EnvelopeBuilder("test-dev", "0123456789abcdef", b"k" * 32),
            Topics("site", "test-dev"),
            sink,
        )
        stats = pipeline.run(threading.Event())
    envelopes = [Envelope.model_validate(json.loads(payload)) for _, _, payload in sink.rows]
    return ClipRun(envelopes, stats.frames, pipeline)
