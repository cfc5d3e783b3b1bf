"""Fit the crowded mode's constants by cross-validation on the shared crowd data, and report the
held-out figures: the tile merge's (agent/runtime/tiles.py: SPLIT_TALL, INSIDE) and the area
estimate's (agent/analytics/crowd.py: BOX_WEIGHT, EDGE_PERSONS_K).

Features come from real pipeline runs (benchmarks/eval_crowd.py, detections cached under --cache),
for each candidate merge: the boxes-only count of each frame, and the raw edge term (a run with
BOX_WEIGHT = 0 and EDGE_PERSONS_K = 1000, so the count read back is the edge term x 1000). Then,
offline: count = max(boxes, BOX_WEIGHT x boxes + EDGE_PERSONS_K x edges), as the agent counts. The
constants are fitted on one half of each set together (the same constants must hold for a fixed
station camera and for street stills) and measured on the other half, both ways: ShanghaiTech B
images split alternately (counts.csv order), the Mall clip split in time (first and second half).
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
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from agent.analytics import crowd
from agent.analytics.crowd import CrowdedSettings
from agent.runtime import tiles
from benchmarks.data import media_dir
from benchmarks.eval_crowd import evaluate_clip, evaluate_images, metrics
from benchmarks.report import write_json

SPLITS = (0.3, 0.5, math.inf)  # tiles.SPLIT_TALL candidates (inf: never)
INSIDES = (0.3, 0.4, 0.5, 0.6, 0.7, math.inf)  # tiles.INSIDE candidates (inf: never)
RAW_K = 1000.0
WEIGHTS = np.round(np.linspace(0.5, 2.0, 31), 3)
KS = np.geomspace(1e-3, 10.0, 121)
CLIPS = ("mall",)  # the sets that are one camera: their bias is in the loss


@contextmanager
def constants(module, **values):
    """`module`'s constants set to `values` for the duration (the pipeline reads them at each frame)."""
    saved = {k: getattr(module, k) for k in values}
    try:
        for k, v in values.items():
            setattr(module, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(module, k, v)


def features(cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per set: truth, and per candidate merge `split|inside` the boxes-only count and the raw edge term,
    one row per frame or image; kept in `cache`/features.json, where only the missing candidates are added
    (delete it after changing the counting)."""
    kept = cache / "features.json"
    out = {n: {k: np.asarray(v, float) for k, v in f.items()} for n, f in json.loads(kept.read_text()).items()} \
        if kept.exists() else {}  # fmt: skip
    media = media_dir() / "crowd"
    sets = {
        "mall": lambda c: evaluate_clip(media / "mall_1001-2000_2fps.mp4", media / "mall_1001-2000_counts.csv", c, cache),
        "shanghaitech_b": lambda c: evaluate_images(media / "shanghaitech_b", media / "shanghaitech_b" / "counts.csv", c, cache),
    }  # fmt: skip
    for name, run in sets.items():
        out.setdefault(name, {})
        for split in SPLITS:
            for inside in INSIDES:
                if f"edges|{split}|{inside}" in out[name]:
                    continue
                with constants(tiles, SPLIT_TALL=split, INSIDE=inside):
                    boxes = run(CrowdedSettings(area_estimate=False))["frames"]
                    with constants(crowd, BOX_WEIGHT=0.0, EDGE_PERSONS_K=RAW_K):
                        edges = run(CrowdedSettings())["frames"]
                out[name]["truth"] = np.array([f["truth"] for f in boxes], float)
                out[name][f"boxes|{split}|{inside}"] = np.array([f["count"] for f in boxes], float)
                out[name][f"edges|{split}|{inside}"] = np.array([f["count"] for f in edges], float) / RAW_K
                print(f"{name}: SPLIT_TALL {split}, INSIDE {inside}: features ready", flush=True)
                kept.write_text(json.dumps({n: {k: v.tolist() for k, v in f.items()} for n, f in out.items()}))
    return out


def predict(boxes: np.ndarray, edges: np.ndarray, weight: float, k: float) -> np.ndarray:
    return np.maximum(boxes, np.round(weight * boxes + k * edges))


def held(f: dict, rows: np.ndarray, merge: str, weight: float, k: float) -> dict:
    """The metrics of the constants on `rows` of one set's features `f`."""
    predicted = predict(f[f"boxes|{merge}"][rows], f[f"edges|{merge}"][rows], weight, k)
    return metrics(predicted.tolist(), f["truth"][rows].tolist())


def loss(sets: dict[str, tuple[dict, np.ndarray]], merge: str, weight: float, k: float) -> float:
    """Sum over the sets of the mean relative error, plus |bias| for a set that is one camera."""
    return sum(m["mre"] + (abs(m["bias"]) if n in CLIPS else 0.0)
               for n, (f, r) in sets.items() for m in [held(f, r, merge, weight, k)])  # fmt: skip


def fit(sets: dict[str, tuple[dict, np.ndarray]]) -> tuple[str, float, float]:
    merges = [f"{s}|{i}" for s in SPLITS for i in INSIDES]
    best = min(((loss(sets, m, w, k), m, w, k) for m in merges for w in WEIGHTS for k in KS), key=lambda x: x[0])
    return best[1], float(best[2]), float(best[3])


def halves(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The two halves of a set: in time for the clip, alternately for the stills."""
    idx = np.arange(n)
    return (idx[: n // 2], idx[n // 2 :]) if name == "mall" else (idx[0::2], idx[1::2])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("var/crowd"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    feats = features(args.cache)
    split = {name: halves(name, len(f["truth"])) for name, f in feats.items()}
    folds = []
    for train_half in (0, 1):
        merge, w, k = fit({n: (feats[n], split[n][train_half]) for n in feats})
        out = {}
        for n, f in feats.items():
            rows = split[n][1 - train_half]
            out[n] = held(f, rows, merge, w, k)
            out[n]["boxes_only"] = metrics(f[f"boxes|{merge}"][rows].tolist(), f["truth"][rows].tolist())
        split_tall, inside = map(float, merge.split("|"))
        folds.append({"fit_on_half": train_half, "split_tall": split_tall, "inside": inside, "box_weight": w,
                      "edge_persons_k": k, "held_out": out})  # fmt: skip
        print(f"fit on half {train_half}: SPLIT_TALL {split_tall}, INSIDE {inside}, BOX_WEIGHT {w}, EDGE_PERSONS_K {k:.4g}")
        for n, m in out.items():
            b = m["boxes_only"]
            print(f"  held-out {n}: MRE {m['mre']:.1%} bias {m['bias']:+.1%} MAE {m['mae']:.2f} corr {m['corr']:.3f}"
                  f"  (boxes only: MRE {b['mre']:.1%} bias {b['bias']:+.1%})")  # fmt: skip
    merge, w, k = fit({n: (f, np.arange(len(f["truth"]))) for n, f in feats.items()})
    split_tall, inside = map(float, merge.split("|"))
    print(f"fit on everything (the constants): SPLIT_TALL {split_tall}, INSIDE {inside}, BOX_WEIGHT {w}, "
          f"EDGE_PERSONS_K {k:.4g}")  # fmt: skip
    if args.json is not None:
        final = {"split_tall": split_tall, "inside": inside, "box_weight": w, "edge_persons_k": k}
        write_json(args.json, {"folds": folds, "final": final})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
