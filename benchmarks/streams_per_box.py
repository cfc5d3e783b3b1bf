"""The most cameras one box holds: raise N until p99 frame-to-event exceeds the budget or frames drop.

    python -m benchmarks.streams_per_box --source file --duration 30 \
        --manifest models/yolox_nano.json --manifest models/light_person_detector.json \
        --out benchmarks/results/streams_per_box.json

Per backend and model manifest (a manifest fixes the precision: give an INT8
QDQ manifest from `edge-agent calibrate` to measure INT8), N doubles from
--start (its last step --max-streams itself) until a run fails, then bisects
between the last N that held and the first that failed. A run holds when its
p99 end to end is within the budget, at most --max-drop of the frames read
were dropped, and every camera kept at least 90% of its frame rate (a reader
that falls behind an RTSP stream drops nothing but stamps late frames as new).
A run whose agent dies fails, with its log's last line (a configuration that
cannot run here, such as TensorRT without it, fails its runs and the others go
on); the result is written after each configuration, the plot at the end.

--mode (repeat) picks which frames the detector sees, side by side in one run:
`every` (every frame, whole image) and the named `detect` blocks of DETECT_MODES
(agent/settings/detect.py): a detect rate apart from the frame rate with the
tracker predicting between, motion gating, crops to the zones, the camera's own
input size.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from itertools import product
from pathlib import Path

from benchmarks import data
from benchmarks.agent_run import exit_on_sigterm, run_agent
from benchmarks.latency_per_stream import BACKENDS, add_run_arguments, check_run_arguments, print_runs, spec_for
from benchmarks.machine import describe
from benchmarks.plot import latency_figure
from benchmarks.report import print_table, write_result

MIN_RATE_SHARE = 0.9
# name -> every camera's `detect` block (None: every frame of the whole image)
DETECT_MODES: dict[str, dict | None] = {
    "every": None,
    "fps5": {"fps": 5.0},
    "fps5-motion-crop": {"fps": 5.0, "motion": True, "crop_to_zones": True},
    "fps5-320": {"fps": 5.0, "input_size_wh": [320, 320]},  # the camera's own input size, on the model given
    # 416's scale for a 4:3 camera without the letterbox's padding rows: 768x576 -> 416x312, in a 416x320 input
    "fps5-416x320": {"fps": 5.0, "input_size_wh": [416, 320]},
    # a 4:3 camera whole at the light person detector's scale (768x576 -> 256x192), every frame
    "every-256x192": {"input_size_wh": [256, 192]},
    # the same, with a detect rate of the camera's frame rate: every frame while the box keeps up, fewer
    # (the tracker predicting between) in the spells it does not, before any frame is dropped
    "fps10-256x192": {"fps": 10.0, "input_size_wh": [256, 192]},
}


def failures(run: dict, budget_ms: float, max_drop: float) -> list[str]:
    """Why a run does not hold (empty when it holds)."""
    p99, frames = run["end_to_end_ms"]["p99"], run["frames"]
    reasons = []
    if p99 is None:
        reasons.append("no event measured")
    elif p99 > budget_ms:
        reasons.append(f"p99 {p99:.0f} ms > {budget_ms:g} ms")
    if frames["drop_fraction"] is None:
        reasons.append("no health report, drops unknown (run longer than 10 s)")
    elif frames["drop_fraction"] > max_drop:
        reasons.append(f"dropped {100 * frames['drop_fraction']:.1f}% > {100 * max_drop:g}%")
    slowest_fps = frames["camera_fps_min"]
    if slowest_fps is not None and slowest_fps < MIN_RATE_SHARE * frames["camera_fps_nominal"]:
        reasons.append(f"a camera fell to {frames['camera_fps_min']:.1f} fps")
    return reasons


def search(
    run_at: Callable[[int], dict], start: int, max_streams: int, budget_ms: float, max_drop: float
) -> tuple[list[dict], int]:
    """Doubling then bisection over N; returns (every run made, largest N that held, 0 if none)."""
    runs: dict[int, dict] = {}

    def holds(n: int) -> bool:
        try:
            runs[n] = run_at(n)
            runs[n]["fails"] = failures(runs[n], budget_ms, max_drop)
        except RuntimeError as exc:  # the agent died (or cannot run here: TensorRT without it): a failed run
            runs[n] = {"streams": n, "error": str(exc), "fails": [_reason(exc)]}
        print(f"  {n} streams: {'holds' if not runs[n]['fails'] else '; '.join(runs[n]['fails'])}", flush=True)
        return not runs[n]["fails"]

    good, bad, n = 0, None, start
    while good < max_streams:
        if not holds(n):
            bad = n
            break
        good, n = n, min(n * 2, max_streams)  # the last step is --max-streams itself
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if holds(mid) else (good, mid)
    return [runs[k] for k in sorted(runs)], good


def _reason(exc: RuntimeError) -> str:
    """What ended a run, in a line: the agent's exit code and its log's last line."""
    first, *rest = str(exc).splitlines() or [""]
    return f"{first.rstrip(':')}: {next((line.strip() for line in reversed(rest) if line.strip()), '')}"[:300]


def measured(runs: list[dict]) -> list[dict]:
    """The runs that measured something (not those whose agent died)."""
    return [r for r in runs if "error" not in r]


def _run(args: argparse.Namespace, manifest: Path, backend: str, mode: str, sessions: int | None, streams: int) -> dict:
    return run_agent(spec_for(args, streams, manifest, backend, DETECT_MODES[mode], sessions))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, action="append", help="model manifest (repeat; default yolox_nano)")
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="inference backend (repeat; default onnxruntime)")
    parser.add_argument("--mode", action="append", choices=sorted(DETECT_MODES), help="detect mode (repeat; default every)")
    parser.add_argument(
        "--sessions", action="append", type=int,
        help="each configuration with model.onnxruntime_sessions N (repeat; default: the agent's)",
    )  # fmt: skip
    parser.add_argument("--budget-ms", type=float, default=100.0, help="p99 frame-to-event budget (default %(default)s)")
    parser.add_argument("--max-drop", type=float, default=0.01,
                        help="largest share of the frames read that may be dropped, a fraction (default %(default)s: 1 %%)")  # fmt: skip
    parser.add_argument("--start", type=int, default=1, help="first stream count (default %(default)s)")
    parser.add_argument("--max-streams", type=int, default=32, help="the most streams tried (default %(default)s)")
    add_run_arguments(parser, source="file")
    args = parser.parse_args(argv)
    if not 1 <= args.start <= args.max_streams:
        parser.error("--start must be 1 or more and at most --max-streams")
    if not 0 <= args.max_drop <= 1:
        parser.error("--max-drop is a fraction of the frames read, 0 to 1 (0.01: 1 %)")
    manifests, backends = args.manifest or [data.DEFAULT_MANIFEST], args.backend or ["onnxruntime"]
    modes = args.mode or ["every"]
    models = dict(zip(manifests, check_run_arguments(parser, args, manifests)))
    exit_on_sigterm()
    machine = describe(vars(args) | {"models": list(models.values())})
    criteria = {"budget_ms": args.budget_ms, "max_drop": args.max_drop, "min_rate_share": MIN_RATE_SHARE}
    configs = []
    for backend in backends:
        for manifest, model in models.items():
            for mode, sessions in product(modes, args.sessions or [None]):
                label = f"{backend} {model['name']} {model['precision']} {mode}"
                label += "" if sessions is None else f" {sessions} sessions"
                print(f"{label}:", flush=True)
                config = {"label": label, "backend": backend, "model": model, "mode": mode, "sessions": sessions,
                          "detect": DETECT_MODES[mode]}  # fmt: skip
                runs, best = search(partial(_run, args, manifest, backend, mode, sessions), args.start,
                                    args.max_streams, args.budget_ms, args.max_drop)  # fmt: skip
                configs.append(config | {"max_streams": best, "runs": runs})
                print_runs(label, measured(runs))
                # what is measured so far is kept, should a later configuration be interrupted
                write_result(args.out, "streams_per_box", machine, {"criteria": criteria, "configs": configs})
    print_table(
        f"streams per box (p99 <= {args.budget_ms:g} ms, drops <= {100 * args.max_drop:g}%)",
        ["backend", "model", "precision", "mode", "ORT sessions", "max streams", "first failure"],
        [
            [c["backend"], c["model"]["name"], c["model"]["precision"], c["mode"], c["sessions"] or "default",
             c["max_streams"],
             next(("; ".join(r["fails"]) for r in c["runs"] if r["fails"]), f"none: {args.max_streams} held")]
            for c in configs
        ],
    )  # fmt: skip
    png = latency_figure({c["label"]: measured(c["runs"]) for c in configs}, args.out.with_suffix(".png"), args.budget_ms)
    write_result(args.out, "streams_per_box", machine, {"criteria": criteria, "configs": configs, "plot": str(png)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
