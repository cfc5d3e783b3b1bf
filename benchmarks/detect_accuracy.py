"""What detecting fewer frames costs in accuracy: vtest.avi through the real pipeline per detect mode.

    python -m benchmarks.detect_accuracy --out benchmarks/results/detect_accuracy.json

Each mode (a model manifest and a camera `detect` block, see agent/settings/detect.py)
replays the whole clip without dropping a frame (`replay: fast`), so the figures do not
depend on the machine's load. Reported per mode: the counting line's in/out (line
x=0.5 of the end-to-end test) against the ground truth's tracks through the same rule,
the wrong-way and loitering situations of the footage test's plaza zone, the share
of frames that went through the detector, and the same events paired one by one with
the ground truth's (`testbed.ground_truth.agreement`: each crossing and each situation's
start within 5 s and 0.15 of the frame of one of the truth's): found and extra. A count can
agree while the events do not, a missed situation and an extra one cancelling out.

`--jitter F --seeds N` (modes with a detect rate) spaces each camera's looks irregularly,
as a loaded box does (the scheduler defers a look while others are more overdue): each
look is due the mode's interval times a uniform factor in [1 - F, 1 + F] after the last,
drawn from a seeded generator, and each figure is reported over N seeds (min and max).
Offline and deterministic, so it shows in seconds what which look sees does to the figures.
`--phases` instead runs the looks exactly periodic, once per phase: a mode that looks at
every Nth frame runs N times, its looks falling on the 1st, 2nd, ... Nth frame of each N.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import cv2

from agent.core.units import NS_PER_S
from agent.runtime.scheduler import CameraSchedule
from agent.settings.detect import DetectSettings
from agent.settings.zones import ZonesDoc
from benchmarks import data
from benchmarks.machine import describe
from benchmarks.report import print_table, write_result
from engines.manifest import load_manifest
from testbed.ground_truth import agreement, gt_events, gt_line_counts
from testbed.pipeline import run_clip

YOLOX_320 = data.REPO / "models" / "yolox_nano_320.json"
LIGHT = data.REPO / "models" / "light_person_detector.json"
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
    # the whole 416 scale of a 4:3 frame without the letterbox's padding rows (768x576 -> 416x312 in 416x320)
    "every 416x320": (data.DEFAULT_MANIFEST, {"input_size_wh": [416, 320]}),
    "fps5 416x320": (data.DEFAULT_MANIFEST, {"fps": 5.0, "input_size_wh": [416, 320]}),
    "fps3.3 416x320": (data.DEFAULT_MANIFEST, {"fps": 10 / 3, "input_size_wh": [416, 320]}),
    "every 320": (YOLOX_320, None),
    "fps5 320": (YOLOX_320, {"fps": 5.0}),
    "fps3.3 320": (YOLOX_320, {"fps": 10 / 3}),
    "fps2.5 320": (YOLOX_320, {"fps": 2.5}),
    # the person-only light detector, a 4:3 camera whole at its scale (768x576 -> 256x192)
    "every light 256x192": (LIGHT, {"input_size_wh": [256, 192]}),
    "fps5 light 256x192": (LIGHT, {"fps": 5.0, "input_size_wh": [256, 192]}),
    "fps3.3 light 256x192": (LIGHT, {"fps": 10 / 3, "input_size_wh": [256, 192]}),
    # a detect rate of the clip's frame rate: every frame, unless the looks are made to skip (`--skip`)
    "fps10 light 256x192": (LIGHT, {"fps": 10.0, "input_size_wh": [256, 192]}),
    "every light 192": (LIGHT, None),
}


FIGURES = ("line_in", "line_out", "wrong_way", "loitering")
# what of the ground truth's events each figure counts (agreement's keys) and how the table names it
EVENTS = {"mid in": "line in", "mid out": "line out", "plaza wrong_way": "wrong-way", "plaza loitering": "loitering"}


def spaced(seed: int, after: Callable[[random.Random, float], float]):
    """CameraSchedule.detected with each next look due `after(rng, interval_ns)` after this one, from a
    generator seeded with `seed`."""
    rng = random.Random(seed)

    def detected(schedule: CameraSchedule, pts_ns: int, grey) -> None:
        interval_ns = NS_PER_S / schedule.settings.fps
        schedule.next_ns, schedule.last_ns, schedule.reference = pts_ns + round(after(rng, interval_ns)), pts_ns, grey

    return mock.patch.object(CameraSchedule, "detected", detected)


def jittered(jitter: float, seed: int):
    """Each next look due the interval times U(1 - jitter, 1 + jitter) after this one."""
    return spaced(seed, lambda rng, interval_ns: interval_ns * (1.0 + jitter * (2.0 * rng.random() - 1.0)))


def skipping(share: float, frame_ns: int, seed: int):
    """Each next look due one interval after this one, and with probability `share` one frame later: the
    frame between is skipped, as a loaded box skips frames of a camera with a detect rate."""
    return spaced(seed, lambda rng, interval_ns: interval_ns + frame_ns * (rng.random() < share))


def shifted(offset_ns: int):
    """CameraSchedule.detected with a camera's second look due `offset_ns` later than the scheduler's own, and
    every look after it one interval on: the same periodic looks, shifted (another phase)."""
    original = CameraSchedule.detected

    def detected(schedule: CameraSchedule, pts_ns: int, grey) -> None:
        first = schedule.last_ns is None
        original(schedule, pts_ns, grey)
        if first:
            schedule.next_ns += offset_ns

    return mock.patch.object(CameraSchedule, "detected", detected)


def looks(detect: dict | None, jitter: float, skip: float, seeds: int, phases: bool, frame_ns: int) -> tuple[list, dict]:
    """One context per run of a mode: the scheduler's own looks, or `seeds` jittered or skipping ones, or one
    per phase; and how they were placed (a mode without a detect rate looks at every frame whatever is asked)."""
    regular = {"jitter": 0.0, "skip": 0.0, "phases": False}
    if detect is None or detect.get("fps") is None:
        return [nullcontext()], regular
    if jitter > 0:
        return [jittered(jitter, seed) for seed in range(seeds)], regular | {"jitter": jitter}
    if skip > 0:
        return [skipping(skip, frame_ns, seed) for seed in range(seeds)], regular | {"skip": skip}
    if phases:
        every = max(1, round(NS_PER_S / detect["fps"] / frame_ns))
        return [shifted(k * frame_ns) for k in range(every)], regular | {"phases": True}
    return [nullcontext()], regular


def span(values: list[int]) -> list[int]:
    """A figure over several runs: [min, max]."""
    return [min(values), max(values)]


def truth() -> list:
    """The events of the same zones fed with vtest's ground-truth tracks."""
    m = load_manifest(data.DEFAULT_MANIFEST)
    return gt_events(data.default_clip().with_suffix(".gt.txt"), ZonesDoc.model_validate(ZONES), m.classes, m.class_map)[0]


def measure(manifest: Path, detect: dict | None, timing, clip: Path, gt: list) -> dict:
    """One run of `clip` (vtest.avi); `timing`: a context that places the looks (`jittered`, `shifted`), None: the
    scheduler's; `gt`: the ground truth's events (`truth()`), to pair ours with."""
    with timing or nullcontext():
        run = run_clip(clip, ZONES, data.models_dir(), manifest=manifest,
                       detect=None if detect is None else DetectSettings(**detect))  # fmt: skip
    last = run.bodies("line_count")[-1]
    started = {k: sum(1 for b in run.bodies(k) if b.state == "started") for k in ("wrong_way", "loitering")}
    paired = agreement([(run.t_s(e), e.body) for e in run.envelopes], gt)
    return {"line_in": last.count_in, "line_out": last.count_out, **started,
            "frames": run.frames, "detected_share": round(run.pipeline.stats.detected / run.frames, 3),
            "vs_truth": {k: paired.get(k, {"hits": 0, "missed": 0, "extra": 0}) for k in EVENTS}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", action="append", choices=sorted(MODES), help="mode (repeat; default all)")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="irregular looks: each interval times U(1 - J, 1 + J) (modes with a detect rate)")
    parser.add_argument("--skip", type=float, default=0.0,
                        help="skipped frames: after each look, the next frame is skipped with probability S "
                        "(modes with a detect rate; at the clip's frame rate, a loaded box's skips)")
    parser.add_argument("--seeds", type=int, default=1, help="with --jitter or --skip: runs per mode, one seed each")
    parser.add_argument("--phases", action="store_true",
                        help="exactly periodic looks, one run per phase (modes with a detect rate)")
    parser.add_argument("--clip", type=Path, default=data.default_clip(),
                        help="vtest.avi (default) or a variant of it that keeps its frame: scaled, or at another "
                        "frame rate (benchmarks/variants.py); the ground truth stays vtest's")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        parser.error(f"--clip {args.clip}: no such file")
    if not 0.0 <= args.jitter < 1.0 or not 0.0 <= args.skip < 1.0 or args.seeds < 1:
        parser.error("--jitter and --skip must be in [0, 1) and --seeds at least 1")
    if sum((args.phases, args.jitter > 0, args.skip > 0)) > 1:
        parser.error("--phases, --jitter and --skip are ways of placing the looks: give one")
    machine = describe(vars(args))  # when the run starts: write_result adds the load at its end
    gt_in, gt_out = gt_line_counts(data.default_clip().with_suffix(".gt.txt"), LINE)
    clip = cv2.VideoCapture(str(args.clip))
    frame_ns = round(NS_PER_S / clip.get(cv2.CAP_PROP_FPS))
    clip.release()
    gt = truth()
    results = {}
    for name in args.mode or list(MODES):
        manifest, detect = MODES[name]
        timings, placed = looks(detect, args.jitter, args.skip, args.seeds, args.phases, frame_ns)
        runs = [measure(manifest, detect, timing, args.clip, gt) for timing in timings]
        results[name] = {"manifest": str(manifest), "detect": detect} | placed | (
            runs[0] if len(runs) == 1 else {"runs": runs} | {k: span([r[k] for r in runs]) for k in FIGURES}
            | {"detected_share": round(sum(r["detected_share"] for r in runs) / len(runs), 3)}
            | {"vs_truth": {k: {n: span([r["vs_truth"][k][n] for r in runs]) for n in ("hits", "extra")} for k in EVENTS}}
        )  # fmt: skip
        print(name, results[name], flush=True)

    def figure(value: int | list[int]) -> str:
        if isinstance(value, int):
            return str(value)
        return str(value[0]) if value[0] == value[1] else f"{value[0]}-{value[1]}"

    print_table(
        f"{args.clip.name} per detect mode (vtest's ground truth line in {gt_in} / out {gt_out})",
        ["mode", "line in", "line out", "wrong-way", "loitering", "frames detected"],
        [[n, *(figure(r[k]) for k in FIGURES), f"{100 * r['detected_share']:.0f}%"] for n, r in results.items()],
    )
    whole = agreement(gt, gt)  # each of the truth's events paired with itself: how many there are
    print_table(
        "the same events paired with the ground truth's: found / extra",
        ["mode", *(f"{name} (of {whole[k]['hits']})" for k, name in EVENTS.items())],
        [[n, *(f"{figure(r['vs_truth'][k]['hits'])} / {figure(r['vs_truth'][k]['extra'])}" for k in EVENTS)]
         for n, r in results.items()],
    )  # fmt: skip
    write_result(args.out, "detect_accuracy", machine, {"ground_truth_line": [gt_in, gt_out],
                 "ground_truth_events": {k: whole[k]["hits"] for k in EVENTS}, "modes": results})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
