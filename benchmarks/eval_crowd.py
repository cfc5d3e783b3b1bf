"""Crowd counts against the truth, through the real pipeline (reader, yolox_nano on the frame and its
tiles, tracker, rules, envelopes): one zone over the whole frame whose occupancy counts in the
crowded mode (`occupancy.crowded`, settle 0, so every change of the count is an event); the count
at each frame is read back from the zone_occupancy events on the wire.

    python -m benchmarks.eval_crowd --clip CLIP --counts COUNTS.csv [--json OUT] [--cache DIR]
    python -m benchmarks.eval_crowd --images DIR --counts DIR/counts.csv [--json OUT] [--cache DIR]

A clip's counts CSV has one row per frame, in order, the count in its last column; an image
folder's has (image, count) rows, and each image runs as a short clip of the repeated frame (made
once with FFmpeg under the cache folder), its count read at the clip's end. A clip annotated for
tracking gives its counts as its MOT ground truth (`--counts vtest.gt.txt`). Prints mean absolute
error, mean relative error, bias (mean error over mean truth) and correlation; `--json` writes them
with every frame's count and the zone's coverage (the share of it the persons' boxes cover, smoothed,
which decides whether the area estimate may take over; read from the rule, it is not on the wire). `--cache` keeps the model's detections (frame and tiles) per clip.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np

from agent.analytics.crowd import CrowdedSettings, ZoneCount
from benchmarks.data import models_dir
from benchmarks.report import write_json
from engines.progress import Progress
from testbed.pipeline import run_clip

FULL = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
STILL_FPS, STILL_S = 2, 1.0  # a still image runs as this short clip of the repeated frame


def zones(crowded: CrowdedSettings | None) -> dict:
    occupancy = {"settle_s": 0.0} if crowded is None else {"settle_s": 0.0, "crowded": crowded.model_dump()}
    return {"zones": [{"id": "all", "camera": "cam", "polygon": FULL, "occupancy": occupancy}]}


@contextmanager
def coverage_probe() -> Iterator[list[float]]:
    """The zone's smoothed coverage after each `ZoneCount.update`, in order (one zone, one camera: one a frame)."""
    seen: list[float] = []
    update = ZoneCount.update

    def probed(self: ZoneCount, tracks, edges) -> None:
        update(self, tracks, edges)
        seen.append(self.coverage)

    with mock.patch.object(ZoneCount, "update", probed):
        yield seen


def counts_over_clip(clip: Path, crowded: CrowdedSettings | None, cache: Path | None) -> tuple[list[int], list[float]]:
    """The zone's count at every frame of `clip`, from the zone_occupancy events of a real pipeline run
    (crowded None: the default occupancy, confirmed tracks on the whole frame), and its coverage at every
    frame (zeros without the crowded mode's area estimate)."""
    kind = "tracks" if crowded is None else f"zoom-{crowded.zoom}"
    with coverage_probe() as coverage:
        run = run_clip(clip, zones(crowded), models_dir(), cache_dir=None if cache is None else cache / kind)
    coverage = coverage or [0.0] * run.frames
    if len(coverage) != run.frames:
        raise RuntimeError(f"{clip}: {run.frames} frames but the zone was updated {len(coverage)} times")
    changes = sorted((e.ts, e.body.count) for e in run.envelopes if e.kind == "zone_occupancy")
    per_frame, count, k = [], 0, 0
    fps = _fps(clip)
    for i in range(run.frames):
        t_ms = run.first_pts_ns // 1_000_000 + round(i * 1000 / fps)
        while k < len(changes) and changes[k][0] <= t_ms:
            count, k = changes[k][1], k + 1
        per_frame.append(count)
    return per_frame, coverage


def _fps(clip: Path) -> float:
    import cv2

    cap = cv2.VideoCapture(str(clip))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS)) or 1.0
    finally:
        cap.release()


def still_clip(image: Path, out_dir: Path) -> Path:
    """`image` as a clip of the repeated frame (MJPEG at high quality), made once."""
    out = out_dir / f"{image.stem}.avi"
    if not out.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.avi")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-t", str(STILL_S), "-r", str(STILL_FPS),
                        "-i", str(image), "-c:v", "mjpeg", "-q:v", "2", str(tmp)], check=True)  # fmt: skip
        tmp.replace(out)
    return out


def relative_errors(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MRE (mean of |error| / truth) and bias (mean error / mean truth) along the last axis of `predicted`."""
    err = predicted - truth
    return (np.abs(err) / np.maximum(truth, 1)).mean(axis=-1), err.mean(axis=-1) / max(truth.mean(), 1e-9)


def metrics(predicted: list[float], truth: list[float]) -> dict:
    """MAE (persons), MRE, bias (`relative_errors`) and Pearson correlation."""
    p, t = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    mre, bias = relative_errors(p, t)
    corr = float(np.corrcoef(p, t)[0, 1]) if len(p) > 1 and p.std() > 0 and t.std() > 0 else float("nan")
    return {"n": len(t), "mae": float(np.abs(p - t).mean()), "mre": float(mre), "bias": float(bias), "corr": corr,
            "truth_mean": float(t.mean()), "predicted_mean": float(p.mean())}  # fmt: skip


def read_counts(path: Path) -> list[tuple[str, int]]:
    """(key, count) rows of a counts CSV with a header: key in the first column, count in the last."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    if not rows:
        raise SystemExit(f"{path}: no rows after the header")
    return [(r[0], int(float(r[-1]))) for r in rows]


def mot_counts(path: Path) -> list[tuple[str, int]]:
    """(frame, persons) of every frame of a MOT ground truth (frame, id, x, y, w, h, ...; frames from 1), 0 where
    nobody is annotated: the counts of a clip annotated for tracking, as vtest.avi's."""
    frames = [int(float(line.split(",")[0])) for line in path.read_text().splitlines() if line.strip()]
    per_frame = Counter(frames)
    return [(str(k), per_frame.get(k, 0)) for k in range(1, max(frames) + 1)]


def evaluate_clip(clip: Path, counts: Path, crowded: CrowdedSettings | None, cache: Path | None) -> dict:
    truth = [c for _, c in (mot_counts(counts) if counts.name.endswith(".gt.txt") else read_counts(counts))]
    predicted, coverage = counts_over_clip(clip, crowded, cache)
    if len(predicted) != len(truth):
        raise SystemExit(f"{clip}: {len(predicted)} frames but {counts} has {len(truth)} counts")
    frames = [{"truth": t, "count": p, "coverage": round(c, 4)} for t, p, c in zip(truth, predicted, coverage)]
    return {"source": str(clip), "frames": frames}


def evaluate_images(folder: Path, counts: Path, crowded: CrowdedSettings | None, cache: Path | None) -> dict:
    frames = []
    stills = (cache or Path("var/crowd")) / "stills"
    images = read_counts(counts)
    with Progress(len(images), "images") as bar:
        for name, truth in images:
            per_frame, coverage = counts_over_clip(still_clip(folder / name, stills), crowded, cache)
            frames.append({"image": name, "truth": truth, "count": per_frame[-1], "coverage": round(coverage[-1], 4)})
            bar.update()
    return {"source": str(folder), "frames": frames}


def cost(images: list[np.ndarray], crowded: CrowdedSettings) -> dict:
    """Milliseconds per frame, measured in one run on `images`: the detector on the whole frame (what every
    camera pays), the crowded mode's detection (frame + tiles, merged) and its counting (edges, perspective,
    area estimate)."""
    from agent.analytics.analyzers.crowd import CrowdAnalyzer
    from agent.analytics.analyzers.downscale import downscale
    from agent.analytics.analyzers.settings import AnalysisSettings
    from agent.core.types import Detections, Tracks
    from agent.runtime import tiles
    from engines.detector import Detector
    from testbed.pipeline import YOLOX

    analysis = AnalysisSettings()
    analyzer, count = CrowdAnalyzer(analysis.crowd), ZoneCount(np.asarray(FULL), np.array([0]), 1.0, True)
    zone = [(np.asarray(FULL, np.float64), crowded.zoom)]
    none = np.zeros(0, np.int64)
    spent = {"whole_frame": 0.0, "crowded_detect": 0.0, "crowded_count": 0.0}
    with Detector.open(YOLOX, models_dir(), class_names=["person"]) as detector:
        detector.detect(images[:1])  # warm-up
        for i, image in enumerate(images):
            t0 = time.perf_counter()
            detector.detect([image])
            t1 = time.perf_counter()
            (found,) = tiles.detect(detector, [(image, None, zone)])
            t2 = time.perf_counter()
            analyzer.observe(downscale(image, analysis.width_px), i)
            size = (image.shape[1], image.shape[0])
            count.update(Tracks("cam", i, Detections.empty(), none, none, size, found), analyzer.edges)
            t3 = time.perf_counter()
            spent["whole_frame"] += t1 - t0
            spent["crowded_detect"] += t2 - t1
            spent["crowded_count"] += t3 - t2
    ms = {k: round(v * 1000 / len(images), 2) for k, v in spent.items()}
    ms["crowded_over_whole_frame"] = round((spent["crowded_detect"] + spent["crowded_count"]) / spent["whole_frame"], 2)
    ms["frames"] = len(images)
    return ms


def first_images(args: argparse.Namespace, n: int) -> list[np.ndarray]:
    """The first n frames of the clip, or the first n images of the folder (in the counts' order)."""
    import cv2

    if args.images is not None:
        return [cv2.imread(str(args.images / name)) for name, _ in read_counts(args.counts)[:n]]
    cap = cv2.VideoCapture(str(args.clip))
    images = [got[1] for _ in range(n) if (got := cap.read())[0]]
    cap.release()
    return images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--clip", type=Path, help="a clip with one count per frame (--counts)")
    src.add_argument("--images", type=Path, help="a folder of still images with a count each (--counts)")
    ap.add_argument("--counts", type=Path, required=True,
                    help="CSV with a header, the count in the last column; or a MOT ground truth (*.gt.txt)")  # fmt: skip
    ap.add_argument("--zoom", type=float, default=CrowdedSettings().zoom, help="crowded mode's tile zoom")
    ap.add_argument("--no-area", action="store_true", help="boxes only: no area estimate")
    ap.add_argument(
        "--tracks", action="store_true", help="the default occupancy instead (confirmed tracks, no crowded mode)"
    )
    ap.add_argument("--cache", type=Path, default=None, help="keep the model's detections here (var/crowd)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures and every frame's count here")
    ap.add_argument("--cost", type=int, default=0, metavar="N",
                    help="also time the crowded mode against the plain detector on the first N frames (or images)")  # fmt: skip
    args = ap.parse_args(argv)
    crowded = None if args.tracks else CrowdedSettings(zoom=args.zoom, area_estimate=not args.no_area)
    t0 = time.perf_counter()
    if args.clip is not None:
        result = evaluate_clip(args.clip, args.counts, crowded, args.cache)
    else:
        result = evaluate_images(args.images, args.counts, crowded, args.cache)
    result["settings"] = "tracks" if crowded is None else crowded.model_dump()
    result["metrics"] = metrics([f["count"] for f in result["frames"]], [f["truth"] for f in result["frames"]])
    result["seconds"] = round(time.perf_counter() - t0, 1)
    m = result["metrics"]
    print(f"{result['source']}: n={m['n']} MAE {m['mae']:.2f} persons, MRE {m['mre']:.1%}, bias {m['bias']:+.1%}, "
          f"corr {m['corr']:.3f} (truth mean {m['truth_mean']:.1f}, counted {m['predicted_mean']:.1f})")  # fmt: skip
    if args.cost and crowded is not None:
        result["cost_ms_per_frame"] = c = cost(first_images(args, args.cost), crowded)
        print(f"cost per frame ({c['frames']} frames): whole frame {c['whole_frame']} ms; crowded mode "
              f"{c['crowded_detect']} ms detection + {c['crowded_count']} ms counting: {c['crowded_over_whole_frame']}x")  # fmt: skip
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
