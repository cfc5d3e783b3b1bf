"""Frame-to-event latency and per-stage cost of the agent with N cameras at the clip's frame rate.

    python -m benchmarks.latency_per_stream --streams 1 4 8 16 --duration 60 \
        --out benchmarks/results/latency_per_stream.json

Per stream count: end to end from the frame's pts to the event at a subscriber
on a real Mosquitto (p50/p95/p99/max), per-stage timings (decode probed beside
the agent, the rest from the agent's health), frames dropped, CPU and RSS of
the agent process. Writes the JSON and a PNG beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import data
from benchmarks.agent_run import STAGES, RunSpec, run_agent
from benchmarks.machine import describe, model_info
from benchmarks.plot import latency_figure
from benchmarks.report import print_table, write_result


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with streams_per_box."""
    parser.add_argument("--source", choices=("rtsp", "file"), default="rtsp", help="RTSP servers or files at real time")
    parser.add_argument("--clip", type=Path, default=None, help="video shown by every camera (default vtest.avi)")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds left out after the agent starts")
    parser.add_argument("--decode-frames", type=int, default=60, help="frames read by the decode probe")
    parser.add_argument("--once", action="store_true",
                        help="file cameras play the clip once (no loop), and each camera's counts over it are read back")
    parser.add_argument("--out", type=Path, required=True, help="result JSON (the PNG goes beside it)")


def spec_for(
    args: argparse.Namespace, streams: int, manifest: Path, backend: str, detect: dict | None = None, sessions: int | None = None
) -> RunSpec:
    if args.once and args.source != "file":
        raise SystemExit("--once needs --source file (an RTSP server loops the clip)")
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
    parser.add_argument("--backend", default="onnxruntime", help="inference backend of the agent config")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    model = model_info(args.manifest, data.models_dir())
    machine = describe(vars(args) | {"model": model})
    runs = [run_agent(spec_for(args, n, args.manifest, args.backend)) for n in args.streams]
    label = f"{args.backend} {model['precision']}"
    print_runs(label, runs)
    png = latency_figure({label: runs}, args.out.with_suffix(".png"))
    write_result(args.out, "latency_per_stream", machine, {"runs": runs, "plot": str(png)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
