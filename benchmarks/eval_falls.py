"""Person-down evaluation: the real pipeline (reader, yolox_nano, tracker, rules) over every
clip in a folder that has a Le2i label beside it, with default settings.

    python -m benchmarks.eval_falls --clips ../shared/media/fall --json benchmarks/results/falls.json \\
        [--also ../shared/media/vtest.avi ...] [--cache var/falls]

Prints, per room (the clip name's second part) and in all: recall, the no-fall clips
with a false alarm, the fall clips with a start outside their fall window, latency of
the first start from the labelled fall end (median, p90), and the time per frame the
person-down rule and its silhouette analyzer add. `--also` clips have no fall: any
person_down on them is a false alarm. `--cache` records what the rules saw for
`benchmarks.tune_falls`. See `benchmarks.fall_clips` for the scoring.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.fall_clips import AFTER_END_S, ClipResult, by_room, run_clip
from benchmarks.report import write_json
from engines.progress import Progress


def _row(name: str, s: dict) -> str:
    recall = "-" if s["recall"] is None else f"{s['detected']}/{s['fall_clips']} ({100 * s['recall']:.0f}%)"
    lat = "-" if s["latency_s_median"] is None else f"{s['latency_s_median']:.2f} / {s['latency_s_p90']:.2f}"
    fa = f"{len(s['false_alarm_clips'])}/{s['no_fall_clips']}"
    return f"{name:<10} {recall:>14} {fa:>12} {len(s['outside_window_on_fall_clips']):>16} {lat:>16}"


def report(results: list[ClipResult], extra: list[ClipResult]) -> dict:
    rooms = by_room(results)
    frames = sum(r.frames for r in results + extra)
    cost = {
        "person_down_ms_per_frame": round(sum(r.rules_ms * r.frames for r in results + extra) / max(frames, 1), 3),
        "inference_ms_per_frame_p50": round(float(np.median([r.inference_ms for r in results + extra])), 2),
    }
    print(f"{'room':<10} {'recall':>14} {'false alarm':>12} {'outside window':>16} {'latency med/p90':>16}")
    for name, s in rooms.items():
        print(_row(name, s))
    for name, s in rooms.items():
        for key in ("missed", "false_alarm_clips", "outside_window_on_fall_clips"):
            if s[key] and name != "all":
                print(f"  {name} {key}: {', '.join(s[key])}")
    for r in extra:
        print(f"{r.name}: person_down started {len(r.started)} times")
    print(f"added by person_down (rule + silhouette analyzer): {cost['person_down_ms_per_frame']} ms per frame; "
          f"detector inference {cost['inference_ms_per_frame_p50']} ms per frame (p50)")  # fmt: skip
    return {
        "window": f"a start from the labelled fall start to {AFTER_END_S} s after its end is that fall's",
        "rooms": rooms,
        "other_clips": {r.name: len(r.started) for r in extra},
        "cost": cost,
        "clips": [asdict(r) for r in results + extra],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="person_down over labelled fall clips, through the real pipeline")
    p.add_argument("--clips", type=Path, required=True, help="folder of clips, each with a Le2i .txt label beside it")
    p.add_argument("--also", type=Path, action="append", default=[], help="a clip without any fall (repeatable)")
    p.add_argument("--models", type=Path, default=Path(os.environ.get("EDGE_AGENT_MODELS_DIR", "../shared/models")))
    p.add_argument("--json", type=Path, help="write the figures and every clip's events here")
    p.add_argument("--cache", type=Path, help="record what the rules saw per clip here, for benchmarks.tune_falls")
    args = p.parse_args(argv)
    clips = sorted(c for c in args.clips.glob("*") if c.suffix in (".mp4", ".avi") and c.with_suffix(".txt").exists())
    if not clips:
        raise SystemExit(f"no clip with a .txt label beside it in {args.clips}")
    for c in args.also:
        if not c.is_file():
            raise SystemExit(f"--also {c}: no such file")

    bar = Progress(len(clips) + len(args.also), "clips")

    def run(clip: Path) -> ClipResult:
        r = run_clip(clip, args.models, cache=None if args.cache is None else args.cache / f"{clip.stem}.npz")
        print(f"{r.name}: {r.frames} frames, label {r.label}, started at frames {r.started}", flush=True)
        bar.update()
        return r

    with bar:
        results = [run(c) for c in clips]
        extra = [run(c) for c in args.also]
    out = report(results, extra)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
