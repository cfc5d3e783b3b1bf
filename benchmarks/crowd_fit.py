"""Fit the crowd area estimate's constants (agent/analytics/crowd.py: BOX_WEIGHT, EDGE_PERSONS_K,
HEIGHT_POWER) by cross-validation on the shared crowd data, and report the held-out figures.

Features come from real pipeline runs (benchmarks/eval_crowd.py, detections cached under --cache):
the boxes-only count of each frame, and the raw edge term for each candidate HEIGHT_POWER (a run
with BOX_WEIGHT = 0 and EDGE_PERSONS_K = 1000, so the count read back is the edge term x 1000).
Then, offline: count = max(boxes, BOX_WEIGHT x boxes + EDGE_PERSONS_K x edges), as the agent counts.
The constants are fitted on one half of each set together (the same constants must hold for a fixed
station camera and for street stills; the loss is the sum over the sets of the mean relative error) and
measured on the other half, both ways: ShanghaiTech B images split alternately (counts.csv order),
the Mall clip split in time (first and second half). The final constants are fitted on everything;
the figures reported are the held-out ones.

    python -m benchmarks.crowd_fit --cache var/crowd --json benchmarks/results/crowd_fit.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from agent.analytics import crowd
from agent.analytics.crowd import CrowdedSettings
from benchmarks.data import media_dir
from benchmarks.eval_crowd import evaluate_clip, evaluate_images, metrics

POWERS = (1.0, 2.0)
RAW_K = 1000.0
WEIGHTS = np.round(np.linspace(0.5, 1.5, 21), 3)
KS = np.geomspace(1e-3, 10.0, 121)


def features(cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per set: truth, boxes-only count, and the raw edge term per power, one row per frame or image; kept in
    `cache`/features.json (delete it after changing the counting or the detections)."""
    kept = cache / "features.json"
    if kept.exists():
        return {n: {k: np.asarray(v, float) for k, v in f.items()} for n, f in json.loads(kept.read_text()).items()}
    media = media_dir() / "crowd"
    sets = {
        "mall": lambda c: evaluate_clip(media / "mall_1001-2000_2fps.mp4", media / "mall_1001-2000_counts.csv", c, cache),
        "shanghaitech_b": lambda c: evaluate_images(media / "shanghaitech_b", media / "shanghaitech_b" / "counts.csv", c, cache),
    }  # fmt: skip
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, run in sets.items():
        boxes = run(CrowdedSettings(area_estimate=False))["frames"]
        out[name] = {
            "truth": np.array([f["truth"] for f in boxes], float),
            "boxes": np.array([f["count"] for f in boxes], float),
        }
        saved = crowd.BOX_WEIGHT, crowd.EDGE_PERSONS_K, crowd.HEIGHT_POWER
        try:
            for p in POWERS:
                crowd.BOX_WEIGHT, crowd.EDGE_PERSONS_K, crowd.HEIGHT_POWER = 0.0, RAW_K, p
                out[name][f"edges{p}"] = np.array([f["count"] for f in run(CrowdedSettings())["frames"]], float) / RAW_K
        finally:
            crowd.BOX_WEIGHT, crowd.EDGE_PERSONS_K, crowd.HEIGHT_POWER = saved
        print(f"{name}: {len(boxes)} frames, features ready", flush=True)
    kept.write_text(json.dumps({n: {k: v.tolist() for k, v in f.items()} for n, f in out.items()}))
    return out


def predict(boxes: np.ndarray, edges: np.ndarray, weight: float, k: float) -> np.ndarray:
    return np.maximum(boxes, np.round(weight * boxes + k * edges))


def loss(sets: list[tuple[dict, np.ndarray]], p: float, weight: float, k: float) -> float:
    """Sum over the sets of the mean relative error (each set counts the same, whatever its size)."""
    return sum(
        metrics(predict(f["boxes"][r], f[f"edges{p}"][r], weight, k).tolist(), f["truth"][r].tolist())["mre"]
        for f, r in sets
    )


def fit(sets: list[tuple[dict, np.ndarray]]) -> tuple[float, float, float]:
    best = min(((loss(sets, p, w, k), p, w, k) for p in POWERS for w in WEIGHTS for k in KS), key=lambda x: x[0])
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
        p, w, k = fit([(feats[n], split[n][train_half]) for n in feats])
        held = {}
        for n, f in feats.items():
            rows = split[n][1 - train_half]
            held[n] = metrics(predict(f["boxes"][rows], f[f"edges{p}"][rows], w, k).tolist(), f["truth"][rows].tolist())
            held[n]["boxes_only"] = metrics(f["boxes"][rows].tolist(), f["truth"][rows].tolist())
        folds.append(
            {"fit_on_half": train_half, "height_power": p, "box_weight": w, "edge_persons_k": k, "held_out": held}
        )
        print(f"fit on half {train_half}: HEIGHT_POWER {p}, BOX_WEIGHT {w}, EDGE_PERSONS_K {k:.4g}", flush=True)
        for n, m in held.items():
            b = m["boxes_only"]
            print(f"  held-out {n}: MRE {m['mre']:.1%} bias {m['bias']:+.1%} MAE {m['mae']:.2f} corr {m['corr']:.3f}"
                  f"  (boxes only: MRE {b['mre']:.1%} bias {b['bias']:+.1%})")  # fmt: skip
    p, w, k = fit([(f, np.arange(len(f["truth"]))) for f in feats.values()])
    print(f"fit on everything (the constants): HEIGHT_POWER {p}, BOX_WEIGHT {w}, EDGE_PERSONS_K {k:.4g}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        final = {"height_power": p, "box_weight": w, "edge_persons_k": k}
        args.json.write_text(json.dumps({"folds": folds, "final": final}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
