"""Frame-to-event latency and per-stage cost of the agent with N cameras at the clip's frame rate.

    python -m benchmarks.latency_per_stream --source file --streams 1 4 8 16 --duration 60 \
        --out benchmarks/results/latency_per_stream.json

(`--source rtsp`, the default, serves each camera from its own RTSP server, which
re-encodes the clip on this box too: keep it to a few streams.)

Per stream count: end to end from the frame's pts to the event at a subscriber
on a real Mosquitto (p50/p95/p99/max), per-stage timings (decode probed beside
the agent, the rest from the agent's health), frames dropped, CPU and RSS of
the agent process. Writes the JSON and a PNG beside it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agent.settings.config import HealthSettings
from benchmarks import data
from benchmarks.agent_run import STAGES, RunSpec, exit_on_sigterm, run_agent
from benchmarks.machine import describe, model_info
from benchmarks.plot import latency_figure
from benchmarks.report import print_table, write_result
from engines.manifest import ModelError

BACKENDS = ("onnxruntime", "tensorrt")


def add_run_arguments(parser: argparse.ArgumentParser, source: str) -> None:
    """Options shared with streams_per_box (`source`: the default --source)."""
    parser.add_argument("--source", choices=("rtsp", "file"), default=source,
                        help="cameras as RTSP servers or as files, at real time (default %(default)s)")  # fmt: skip
    parser.add_argument("--clip", type=Path, default=None, help="video shown by every camera (default vtest.avi)")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per run (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds left out after the agent starts (default %(default)s)")  # fmt: skip
    parser.add_argument("--decode-frames", type=int, default=60, help="frames read by the decode probe (default %(default)s)")
    parser.add_argument("--once", action="store_true",
                        help="file cameras play the clip once (no loop), and each camera's counts over it are read back")
    parser.add_argument("--out", type=Path, required=True, help="result JSON (the PNG goes beside it)")


def check_run_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, manifests: list[Path]) -> list[dict]:
    """Refuse, before anything starts, what would waste the run or lose its figures; returns each manifest's
    `model_info`."""
    health_s = HealthSettings().interval_s
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be above 0 and --warmup 0 or more")
    if args.warmup + args.duration <= health_s:
        parser.error(f"--warmup + --duration must exceed {health_s:g} s: stage timings and drop counts come from the "
                     "agent's health report, sent that often")  # fmt: skip
    if args.once and args.source != "file":
        parser.error("--once needs --source file (an RTSP server loops the clip)")
    clip = args.clip or data.default_clip()
    if not clip.is_file():
        parser.error(f"clip {clip}: no such file (--clip, or EDGE_AGENT_MEDIA_DIR for vtest.avi)")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a folder: give the result's file name (.json)")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {args.out}: cannot make its folder: {exc.strerror or exc}")
    if not os.access(args.out.parent, os.W_OK):
        parser.error(f"--out {args.out}: its folder is not writable")
    try:
        return [model_info(m, data.models_dir()) for m in manifests]
    except ModelError as exc:
        parser.error(str(exc))


def spec_for(
    args: argparse.Namespace, streams: int, manifest: Path, backend: str, detect: dict | None = None, sessions: int | None = None
) -> RunSpec:
    return RunSpec(
        streams=streams, source=args.source, clip=(args.clip or data.default_clip()).resolve(),
        manifest=manifest.resolve(), models_dir=data.models_dir(), backend=backend, duration_s=args.duration,
        warmup_s=args.warmup, decode_frames=args.decode_frames, detect=detect, once=args.once, sessions=sessions,
    )  # fmt: skip


def print_runs(title: str, runs: list[dict]) -> None:
    cols = ["streams", "e2e p50", "p95", "p99", "max", "events", "drop %", "cam fps", "detect fps", "CPU %", "RSS MB",
            "RSS budget"]
    print_table(f"{title}: end to end (ms), frames, resources", cols, [
        [r["streams"], *(r["end_to_end_ms"][k] for k in ("p50", "p95", "p99", "max")), r["events"]["measured"],
         None if r["frames"]["drop_fraction"] is None else 100 * r["frames"]["drop_fraction"],
         r["frames"]["camera_fps_min"], r["frames"].get("detect_fps_mean"), r["resources"]["cpu_percent"],
         r["resources"]["rss_mb_peak"],
         r["resources"]["rss_budget_mb"]]
        for r in runs
    ])  # fmt: skip
    for r in runs:
        rows = [[s, *(r["stages_ms"].get(s, {}).get(k) for k in ("p50", "p95", "p99", "max"))] for s in STAGES]
        print_table(f"{title}: stages at {r['streams']} streams (ms)", ["stage", "p50", "p95", "p99", "max"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1], help="stream counts to run, one run each")
    parser.add_argument("--manifest", type=Path, default=data.DEFAULT_MANIFEST, help="model manifest")
    parser.add_argument("--backend", choices=BACKENDS, default="onnxruntime", help="inference backend of the agent config")
    add_run_arguments(parser, source="rtsp")
    args = parser.parse_args(argv)
    if min(args.streams) < 1:
        parser.error("--streams: each count must be 1 or more")
    (model,) = check_run_arguments(parser, args, [args.manifest])
    exit_on_sigterm()
    machine = describe(vars(args) | {"model": model})
    label = f"{args.backend} {model['precision']}"
    runs: list[dict] = []
    for n in args.streams:
        try:
            runs.append(run_agent(spec_for(args, n, args.manifest, args.backend)))
        except RuntimeError as exc:  # the runs made so far are kept, with why the next one failed
            write_result(args.out, "latency_per_stream", machine, {"runs": runs, "failed": {"streams": n, "error": str(exc)}})
            print(f"{n} streams: {exc}")
            return 1
        p99, dropped = runs[-1]["end_to_end_ms"]["p99"], runs[-1]["frames"]["drop_fraction"]
        print(f"  {n} streams: p99 {p99} ms, dropped {'-' if dropped is None else f'{100 * dropped:.2f} %'}", flush=True)
    print_runs(label, runs)
    png = latency_figure({label: runs}, args.out.with_suffix(".png"))
    write_result(args.out, "latency_per_stream", machine, {"runs": runs, "plot": str(png)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
