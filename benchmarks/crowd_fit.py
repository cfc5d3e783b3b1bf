"""Fit the crowded mode's constants by cross-validation on the shared crowd data, and report the
held-out figures: the tile merge's (agent/runtime/tiles.py: SPLIT_TALL, INSIDE) and the area
estimate's (agent/analytics/crowd.py: BOX_WEIGHT, EDGE_PERSONS_K, PACKED).

Features come from real pipeline runs (benchmarks/eval_crowd.py, detections cached under --cache),
for each candidate merge: the boxes-only count of each frame, the raw edge term (a run with
BOX_WEIGHT = 0, EDGE_PERSONS_K = 1000 and PACKED = 0, so the count read back is the edge term x 1000)
and the zone's coverage by the boxes. Then, offline: count = max(boxes, BOX_WEIGHT x boxes +
EDGE_PERSONS_K x edges) where the coverage is PACKED or more, the boxes elsewhere, as the agent
counts. The sets: Mall (a station-like camera, 17-48 people), ShanghaiTech B (street stills, 14-575)
and vtest.avi (a sparse scene, 2-8 people, counts from its MOT ground truth: the crowded mode must
not double a zone's people when it empties). The constants are fitted on one half of each set
together (the same constants must hold for a fixed station camera, for street stills and for a quiet
scene) and measured on the other half, both ways: ShanghaiTech B images split alternately (counts.csv
order), the clips split in time (first and second half).
The loss is the sum over the sets of the mean relative error, plus the |bias| of a set that is one
camera (a clip: its bias is that camera's, what its operator sees; over stills of different cameras
it is not), each set counting the same whatever its size. The final constants are fitted on
everything; the figures reported are the held-out ones.

    python -m benchmarks.crowd_fit --cache var/crowd --json benchmarks/results/crowd_fit.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from unittest import mock

import numpy as np

from agent.analytics import crowd
from agent.analytics.crowd import CrowdedSettings
from agent.runtime import tiles
from benchmarks.data import media_dir
from benchmarks.eval_crowd import evaluate_clip, evaluate_images, metrics, relative_errors
from benchmarks.report import write_json

SPLITS = (0.3, 0.5, math.inf)  # tiles.SPLIT_TALL candidates (inf: never)
INSIDES = (0.3, 0.4, 0.5, 0.6, 0.7, math.inf)  # tiles.INSIDE candidates (inf: never)
RAW_K = 1000.0
WEIGHTS = np.round(np.linspace(0.5, 2.0, 31), 3)
KS = np.geomspace(1e-3, 10.0, 121)
PACKEDS = (0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2)  # crowd.PACKED candidates
CLIPS = ("mall", "vtest")  # the sets that are one camera: their bias is in the loss


def features(cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per set: truth, and per candidate merge `split|inside` the boxes-only count, the raw edge term and the
    coverage, one row per frame or image; kept in `cache`/features.json, where only the missing candidates are added
    (delete it after changing the counting)."""
    kept = cache / "features.json"
    out = {n: {k: np.asarray(v, float) for k, v in f.items()} for n, f in json.loads(kept.read_text()).items()} \
        if kept.exists() else {}  # fmt: skip
    media = media_dir() / "crowd"
    sets = {
        "mall": lambda c: evaluate_clip(media / "mall_1001-2000_2fps.mp4", media / "mall_1001-2000_counts.csv", c, cache),
        "shanghaitech_b": lambda c: evaluate_images(media / "shanghaitech_b", media / "shanghaitech_b" / "counts.csv", c, cache),
        "vtest": lambda c: evaluate_clip(media.parent / "vtest.avi", media.parent / "vtest.gt.txt", c, cache),
    }  # fmt: skip
    for name, run in sets.items():
        out.setdefault(name, {})
        for split in SPLITS:
            for inside in INSIDES:
                merge = f"{split}|{inside}"
                if f"coverage|{merge}" in out[name]:
                    continue
                with mock.patch.multiple(tiles, SPLIT_TALL=split, INSIDE=inside):  # the pipeline reads them each frame
                    if f"boxes|{merge}" not in out[name]:
                        boxes = run(CrowdedSettings(area_estimate=False))["frames"]
                        out[name][f"boxes|{merge}"] = np.array([f["count"] for f in boxes], float)
                    with mock.patch.multiple(crowd, BOX_WEIGHT=0.0, EDGE_PERSONS_K=RAW_K, PACKED=0.0):
                        edges = run(CrowdedSettings())["frames"]
                out[name]["truth"] = np.array([f["truth"] for f in edges], float)
                out[name][f"edges|{merge}"] = np.array([f["count"] for f in edges], float) / RAW_K
                out[name][f"coverage|{merge}"] = np.array([f["coverage"] for f in edges], float)
                print(f"{name}: SPLIT_TALL {split}, INSIDE {inside}: features ready", flush=True)
                kept.write_text(json.dumps({n: {k: v.tolist() for k, v in f.items()} for n, f in out.items()}))
    return out


Constants = tuple[str, float, float, float]
"""merge `split|inside`, BOX_WEIGHT, EDGE_PERSONS_K, PACKED"""


def predict(f: dict, rows: np.ndarray, merge: str, weight: float, k: float | np.ndarray, packed: float) -> np.ndarray:
    """The agent's count on `rows` of one set's features `f`; k an array: a row of counts per candidate."""
    boxes = f[f"boxes|{merge}"][rows]
    area = np.maximum(boxes, np.round(weight * boxes + np.multiply.outer(k, f[f"edges|{merge}"][rows])))
    return np.where(f[f"coverage|{merge}"][rows] >= packed, area, boxes)


def held(f: dict, rows: np.ndarray, c: Constants) -> dict:
    """The metrics of the constants on `rows` of one set's features `f`."""
    return metrics(predict(f, rows, *c).tolist(), f["truth"][rows].tolist())


def losses(sets: dict[str, tuple[dict, np.ndarray]], merge: str, weight: float, packed: float) -> np.ndarray:
    """Per candidate EDGE_PERSONS_K (KS): the sum over the sets of the mean relative error, plus |bias| for
    a set that is one camera."""
    total = np.zeros(len(KS))
    for n, (f, rows) in sets.items():
        mre, bias = relative_errors(predict(f, rows, merge, weight, KS, packed), f["truth"][rows])
        total += mre + (np.abs(bias) if n in CLIPS else 0.0)
    return total


def fit(sets: dict[str, tuple[dict, np.ndarray]]) -> Constants:
    """The constants of least loss; among equal losses, the first in the candidates' order, but the largest
    PACKED (the area estimate used no more widely than the data ask: it exists for crowds)."""
    best: tuple[float, Constants] | None = None
    for merge in (f"{s}|{i}" for s in SPLITS for i in INSIDES):
        for weight in WEIGHTS:
            for packed in sorted(PACKEDS, reverse=True):
                scores = losses(sets, merge, float(weight), packed)
                i = int(np.argmin(scores))
                if best is None or scores[i] < best[0]:
                    best = (float(scores[i]), (merge, float(weight), float(KS[i]), packed))
    assert best is not None
    return best[1]


def halves(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The two halves of a set: in time for a clip, alternately for the stills."""
    idx = np.arange(n)
    return (idx[: n // 2], idx[n // 2 :]) if name in CLIPS else (idx[0::2], idx[1::2])


def described(c: Constants) -> dict:
    merge, weight, k, packed = c
    split_tall, inside = map(float, merge.split("|"))
    return {"split_tall": split_tall, "inside": inside, "box_weight": weight, "edge_persons_k": k, "packed": packed}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("var/crowd"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    feats = features(args.cache)
    split = {name: halves(name, len(f["truth"])) for name, f in feats.items()}
    folds = []
    for train_half in (0, 1):
        c = fit({n: (feats[n], split[n][train_half]) for n in feats})
        out = {}
        for n, f in feats.items():
            rows = split[n][1 - train_half]
            out[n] = held(f, rows, c)
            out[n]["boxes_only"] = metrics(f[f"boxes|{c[0]}"][rows].tolist(), f["truth"][rows].tolist())
        folds.append({"fit_on_half": train_half, **described(c), "held_out": out})
        print(f"fit on half {train_half}: {described(c)}")
        for n, m in out.items():
            b = m["boxes_only"]
            print(f"  held-out {n}: MRE {m['mre']:.1%} bias {m['bias']:+.1%} MAE {m['mae']:.2f} corr {m['corr']:.3f}"
                  f"  (boxes only: MRE {b['mre']:.1%} bias {b['bias']:+.1%})")  # fmt: skip
    final = described(fit({n: (f, np.arange(len(f["truth"]))) for n, f in feats.items()}))
    print(f"fit on everything (the constants): {final}")
    if args.json is not None:
        write_json(args.json, {"folds": folds, "final": final})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
