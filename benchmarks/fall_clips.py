"""Le2i fall clips through the real pipeline (reader, detector, tracker, rules), with what
the rules saw recorded per frame so that person-down settings can be tuned offline.

`run_clip` runs one clip as `edge-agent run` would (a file camera replayed without
dropping frames, the model's default confidence, the zones below) and returns the
person_down events with their frame numbers. With `cache`, it also writes what the
camera's rules were given on every frame: the tracks and the grey frame the
frame-level analyzers see (`width_px` wide), so `benchmarks.tune_falls` can replay the
rules on them without the model.

Scoring (`summarise`): a fall clip is detected when a `started` comes between the
labelled fall start and `AFTER_END_S` after its end; latency is that first start less
the labelled end. A `started` anywhere else on a fall clip, or anywhere on a clip
without a fall, is a false alarm. Le2i clips end 1.3-8 s after the fall (median
3.2 s), so a start later than that cannot happen on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import cv2
import numpy as np

import agent.runtime.pipeline as pipeline_module
from agent.analytics.analyzers.downscale import downscale
from agent.analytics.camera import CameraRules
from agent.core.events import Event
from agent.core.types import Frame, Tracks
from testbed.pipeline import YOLOX
from testbed.pipeline import run_clip as run_pipeline

FULL = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
ZONES = {"zones": [{"id": "room", "camera": "cam", "polygon": FULL, "person_down": {}}]}
ROOMS = ("coffee01", "coffee02", "home01", "home02")


@dataclass(frozen=True, slots=True)
class Label:
    """A clip's fall window, 1-based frames; (0, 0): no fall."""

    start: int
    end: int

    @property
    def fall(self) -> bool:
        return self.end > 0


def read_label(txt: Path) -> Label:
    """The first two lines of a Le2i label file: fall start and end frame."""
    lines = txt.read_text().split()
    if len(lines) < 2:
        raise ValueError(f"{txt}: expected the fall's start and end frame on its first two lines")
    return Label(int(lines[0]), int(lines[1]))


def room_of(name: str) -> str:
    """le2i_coffee01_v07 -> coffee01; clips from elsewhere are their own room."""
    parts = name.split("_")
    return parts[1] if len(parts) > 1 and parts[0] == "le2i" else name


@dataclass
class ClipResult:
    name: str
    fps: float
    frames: int
    label: Label | None
    started: list[int] = field(default_factory=list)  # 1-based frame of each person_down `started`
    ended: list[int] = field(default_factory=list)
    rules_ms: float = 0.0  # mean time per frame of the camera's rules and analyzers (here: person_down alone)
    inference_ms: float = 0.0  # the detector's median inference time per frame, for scale


class _Recorder(CameraRules):
    """The camera's rules, recording each frame's tracks and analyzer frame on the way through."""

    def __init__(self, inner: CameraRules, record: bool) -> None:
        super().__init__(inner.rules, inner.analyzers, inner.width_px)
        self.record = record
        self.frames = 0
        self.events: list[tuple[int, Event]] = []
        self.rules_s = 0.0
        self.pts: list[int] = []
        self.grey: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []  # per track row: frame, id, x1, y1, x2, y2, score, class
        self.ended: list[np.ndarray] = []  # frame, id

    def update(self, tracks: Tracks, frame: Frame, small: np.ndarray | None = None) -> list[Event]:
        t0 = time.perf_counter()
        events = super().update(tracks, frame, small)
        self.rules_s += time.perf_counter() - t0
        self.frames += 1
        self.events.extend((self.frames, e) for e in events)
        if self.record:
            i = self.frames
            self.pts.append(frame.pts_ns)
            self.grey.append(cv2.cvtColor(downscale(frame.image, self.width_px), cv2.COLOR_BGR2GRAY))
            d = tracks.detections
            self.rows.append(np.column_stack([np.full(len(tracks), i), tracks.track_id, d.xyxy, d.confidence, d.class_id]))
            self.ended.append(np.column_stack([np.full(len(tracks.ended), i), tracks.ended]))
        return events

    def save(self, path: Path, size_wh: tuple[int, int], fps: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            pts_ns=np.asarray(self.pts, np.int64),
            grey=np.stack(self.grey),
            rows=np.concatenate(self.rows).reshape(-1, 8).astype(np.float64),
            ended=np.concatenate(self.ended).reshape(-1, 2).astype(np.int64),
            size_wh=np.asarray(size_wh),
            fps=np.asarray(fps),
        )


def run_clip(clip: Path, models_dir: Path, zones: dict = ZONES, cache: Path | None = None) -> ClipResult:
    """The real pipeline over `clip` (testbed.pipeline.run_clip, with the camera's rules recorded);
    person_down events by frame; the recording to `cache` if given."""
    cap = cv2.VideoCapture(str(clip))
    fps, size_wh = cap.get(cv2.CAP_PROP_FPS), (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    recorders: list[_Recorder] = []

    def build(*args, **kw) -> CameraRules:
        recorders.append(_Recorder(real_build(*args, **kw), cache is not None))
        return recorders[-1]

    real_build = pipeline_module.build_rules
    with mock.patch.object(pipeline_module, "build_rules", build):
        run = run_pipeline(clip, zones, models_dir, manifest=YOLOX)
    rec = recorders[0]
    txt = clip.with_suffix(".txt")
    result = ClipResult(clip.stem, fps, rec.frames, read_label(txt) if txt.exists() else None)
    for frame_no, e in rec.events:
        if e.body.kind == "person_down":
            (result.started if e.body.state == "started" else result.ended).append(frame_no)
    result.rules_ms = 1000.0 * rec.rules_s / max(rec.frames, 1)
    result.inference_ms = run.pipeline.timer.percentiles_ms().get("inference", {}).get("p50", 0.0)
    if cache is not None:
        rec.save(cache, size_wh, fps)
    return result


# ---------------------------------------------------------------- scoring

AFTER_END_S = 10.0  # a start up to this long after the labelled fall end is that fall's


def in_window(result: ClipResult, frame: int) -> bool:
    """Whether a start at `frame` belongs to the clip's labelled fall."""
    label = result.label
    return label is not None and label.fall and label.start <= frame <= label.end + AFTER_END_S * result.fps


def summarise(results: list[ClipResult]) -> dict:
    """Recall, false alarms and latency of a set of clips (see the module's docstring)."""
    falls = [r for r in results if r.label is not None and r.label.fall]
    others = [r for r in results if r not in falls]
    hits = [r for r in falls if any(in_window(r, f) for f in r.started)]
    latency = [(min(f for f in r.started if in_window(r, f)) - r.label.end) / r.fps for r in hits]
    out = {
        "fall_clips": len(falls),
        "detected": len(hits),
        "recall": round(len(hits) / len(falls), 3) if falls else None,
        "missed": sorted(r.name for r in falls if r not in hits),
        "no_fall_clips": len(others),
        "false_alarm_clips": sorted(r.name for r in others if r.started),
        "outside_window_on_fall_clips": sorted(r.name for r in falls if any(not in_window(r, f) for f in r.started)),
        "latency_s_median": round(float(np.median(latency)), 2) if latency else None,
        "latency_s_p90": round(float(np.percentile(latency, 90)), 2) if latency else None,
    }
    return out


def by_room(results: list[ClipResult]) -> dict[str, dict]:
    rooms = sorted({room_of(r.name) for r in results})
    return {**{room: summarise([r for r in results if room_of(r.name) == room]) for room in rooms}, "all": summarise(results)}
