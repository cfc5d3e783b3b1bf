"""What detecting fewer frames costs in accuracy: vtest.avi through the real pipeline per detect mode.

    python -m benchmarks.detect_accuracy --out benchmarks/results/detect_accuracy.json

Each mode (a model manifest and a camera `detect` block, see agent/settings/detect.py)
replays the whole clip without dropping a frame (`replay: fast`), so the figures do not
depend on the machine's load. Reported per mode: the counting line's in/out (line
x=0.5 of the end-to-end test) against the ground truth's tracks through the same rule,
the wrong-way and loitering situations of the footage test's plaza zone, and the share
of frames that went through the detector.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.settings.detect import DetectSettings
from benchmarks import data
from benchmarks.machine import describe
from benchmarks.report import print_table, write_result
from testbed.ground_truth import gt_line_counts
from testbed.pipeline import run_clip

YOLOX_320 = data.REPO / "models" / "yolox_nano_320.json"
LINE = [[0.5, 0.2], [0.5, 0.8]]
PLAZA = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]
ZONES = {
    "zones": [{"id": "plaza", "camera": "cam", "polygon": PLAZA, "loitering": {}, "wrong_way": {"direction": [1.0, 0.0]}}],
    "lines": [{"id": "mid", "camera": "cam", "points": LINE}],
}  # fmt: skip
# name -> (manifest, detect block); the crop covers the plaza and the line here (y 0.05..1)
MODES: dict[str, tuple[Path, dict | None]] = {
    "every 416": (data.DEFAULT_MANIFEST, None),
    "fps5 416": (data.DEFAULT_MANIFEST, {"fps": 5.0}),
    "fps5 motion crop 416": (data.DEFAULT_MANIFEST, {"fps": 5.0, "motion": True, "crop_to_zones": True}),
    "fps3.3 416": (data.DEFAULT_MANIFEST, {"fps": 10 / 3}),
    "fps2.5 416": (data.DEFAULT_MANIFEST, {"fps": 2.5}),
    "fps2 416": (data.DEFAULT_MANIFEST, {"fps": 2.0}),
    # what the scheduler held 16 streams of fps5 to on this box before its share adapted (1.4 detections/s)
    "fps1.5 416": (data.DEFAULT_MANIFEST, {"fps": 1.5}),
    "fps1.2 416": (data.DEFAULT_MANIFEST, {"fps": 1.2}),
    "every 320": (YOLOX_320, None),
    "fps5 320": (YOLOX_320, {"fps": 5.0}),
    "fps3.3 320": (YOLOX_320, {"fps": 10 / 3}),
    "fps2.5 320": (YOLOX_320, {"fps": 2.5}),
}


def measure(manifest: Path, detect: dict | None) -> dict:
    run = run_clip(data.default_clip(), ZONES, data.models_dir(), manifest=manifest,
                   detect=None if detect is None else DetectSettings(**detect))  # fmt: skip
    last = run.bodies("line_count")[-1]
    started = {k: sum(1 for b in run.bodies(k) if b.state == "started") for k in ("wrong_way", "loitering")}
    return {"line_in": last.count_in, "line_out": last.count_out, **started,
            "frames": run.frames, "detected_share": round(run.pipeline.stats.detected / run.frames, 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", action="append", choices=sorted(MODES), help="mode (repeat; default all)")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args(argv)
    machine = describe(vars(args))  # when the run starts: write_result adds the load at its end
    gt_in, gt_out = gt_line_counts(data.default_clip().with_suffix(".gt.txt"), LINE)
    results = {}
    for name in args.mode or list(MODES):
        manifest, detect = MODES[name]
        results[name] = {"manifest": str(manifest), "detect": detect} | measure(manifest, detect)
        print(name, results[name], flush=True)
    print_table(
        f"vtest.avi per detect mode (ground truth line in {gt_in} / out {gt_out})",
        ["mode", "line in", "line out", "wrong-way", "loitering", "frames detected"],
        [[n, r["line_in"], r["line_out"], r["wrong_way"], r["loitering"], f"{100 * r['detected_share']:.0f}%"]
         for n, r in results.items()],
    )  # fmt: skip
    write_result(args.out, "detect_accuracy", machine, {"ground_truth_line": [gt_in, gt_out], "modes": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
