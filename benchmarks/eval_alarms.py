"""Alarms on footage: every clip of the given folders through the real pipeline (reader,
yolox_nano, tracker, rules, envelopes) with every alarm kind on over the whole frame
(`fire`, `abandoned_object`, `person_down`, `weapon`), at default settings. Prints, per clip
and kind, the alarms raised, when (seconds from the clip's start) and why; writes JSON too.
Then the cost of the frame-level analyzers per analysis and per frame, against the
detector's, measured in the same run.

    python -m benchmarks.eval_alarms --clips DIR [DIR ...] [--json OUT] [--cache var/detections]

`--cache` keeps the model's detections of each clip (keyed by the clip's bytes, the model
and its settings), so a second run with other rule settings skips the model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2

from agent.analytics.analyzers.downscale import downscale
from agent.analytics.camera import build_rules
from agent.settings.zones import ZonesDoc
from benchmarks.data import DEFAULT_MANIFEST, models_dir
from benchmarks.report import write_json
from engines.detector import Detector
from engines.manifest import load_manifest
from engines.progress import Progress
from testbed.pipeline import run_clip

ALARM_KINDS = ("fire", "abandoned_object", "person_down", "weapon")
FULL = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
ALARM_ZONES = {
    "zones": [
        {"id": "all", "camera": "cam", "polygon": FULL, "classes": ["person", "bag", "weapon"],
         "fire": {}, "abandoned": {}, "person_down": {}, "weapon": {}},
    ]
}  # fmt: skip
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov"}


def clips_in(folders: list[Path]) -> list[Path]:
    """The video files of `folders` (not recursive), sorted; a folder without any is an error."""
    out = []
    for folder in folders:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise SystemExit(f"{folder}: no video file ({', '.join(sorted(VIDEO_SUFFIXES))}) in it")
        out.extend(found)
    return out


def evaluate(clip: Path, models: Path, cache_dir: Path | None = None) -> dict:
    """The alarms of one clip: {"clip", "frames", "alarms": {kind: [{"t_s", **body}]}} (started and ended)."""
    run = run_clip(clip, ALARM_ZONES, models, cache_dir=cache_dir)
    alarms: dict[str, list[dict]] = {kind: [] for kind in ALARM_KINDS}
    for env in run.envelopes:
        if env.kind in alarms:
            body = env.body.model_dump(mode="json", exclude={"kind", "zone_id"})
            alarms[env.kind].append({"t_s": round(run.t_s(env), 2), **body})
    return {"clip": clip.name, "frames": run.frames, "alarms": alarms}


def started(result: dict, kind: str) -> list[dict]:
    return [a for a in result["alarms"][kind] if a["state"] == "started"]


def analyzer_cost(clip: Path, models: Path, frames: int = 150) -> dict:
    """Milliseconds per analysis of each frame-level analyzer the alarm zones use, and per camera
    frame at their default rates, against the detector's inference per frame, on `frames` frames of `clip`."""
    doc = ZonesDoc.model_validate(ALARM_ZONES)
    m = load_manifest(DEFAULT_MANIFEST)
    analyzers = build_rules(doc, "cam", m.classes, m.class_map).analyzers
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS)
    images = []
    while len(images) < frames and (got := cap.read())[0]:
        images.append(got[1])
    spent = {type(a.analyzer).__name__: 0.0 for a in analyzers}
    spent["downscale"] = 0.0
    for i, image in enumerate(images):
        t0 = time.perf_counter()
        small = downscale(image, doc.analysis.width_px)
        spent["downscale"] += time.perf_counter() - t0
        for a in analyzers:
            t0 = time.perf_counter()
            a.analyzer.observe(small, int(i * 1e9 / fps))
            spent[type(a.analyzer).__name__] += time.perf_counter() - t0
    with Detector.open(DEFAULT_MANIFEST, models) as detector:
        detector.detect(images[:1])  # warm-up
        t0 = time.perf_counter()
        for image in images[:30]:
            detector.detect([image])
        detector_ms = (time.perf_counter() - t0) / min(len(images), 30) * 1e3
    per_analysis = {k: v / len(images) * 1e3 for k, v in spent.items()}
    rates = {type(a.analyzer).__name__: a.fps for a in analyzers}
    per_frame = sum(ms * min(rates.get(k, fps), fps) / fps for k, ms in per_analysis.items())
    return {
        "clip": clip.name,
        "camera_fps": fps,
        "ms_per_analysis": {k: round(v, 3) for k, v in per_analysis.items()},
        "analyses_per_s": rates,
        "analyzers_ms_per_frame": round(per_frame, 3),
        "detector_ms_per_frame": round(detector_ms, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, nargs="+", required=True, help="folders whose video files are evaluated")
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    ap.add_argument("--cache", type=Path, help="keep the model's detections of each clip in this folder")
    ap.add_argument("--cost-clip", type=Path, help="clip the analyzers' cost is measured on (default: the first clip)")
    args = ap.parse_args(argv)
    clips = clips_in(args.clips)
    models = models_dir()
    results = []
    print(f"{'clip':34} {'s':>6}  " + "  ".join(f"{k:>16}" for k in ALARM_KINDS))
    with Progress(len(clips), "clips") as bar:
        for clip in clips:
            r = evaluate(clip, models, args.cache)
            results.append(r)
            bar.update()
            cells = [",".join(f"{a['t_s']:.1f}" for a in started(r, k)) or "-" for k in ALARM_KINDS]
            print(f"{clip.name[:34]:34} {r['frames']:>6}  " + "  ".join(f"{c[:16]:>16}" for c in cells), flush=True)
            for kind in ("fire", "abandoned_object"):
                for a in started(r, kind):
                    print(f"    {kind} at {a['t_s']} s: {a.get('reasons', a.get('source'))} box {a['box']}")
    totals = {k: sum(len(started(r, k)) for r in results) for k in ALARM_KINDS}
    print("started alarms in all:", totals)
    cost = analyzer_cost(args.cost_clip or clips[0], models)
    print(
        f"cost on {cost['clip']}: analyzers {cost['analyzers_ms_per_frame']} ms per frame "
        f"({cost['ms_per_analysis']} ms per analysis at {cost['analyses_per_s']} /s), "
        f"detector {cost['detector_ms_per_frame']} ms per frame"
    )
    if args.json:
        write_json(args.json, {"clips": results, "started": totals, "cost": cost})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
