"""The agent against a typical user's script on the same job, model and clip, in alternating runs.

    python -m benchmarks.peer --rounds 3 --out benchmarks/results/peer.json

The job: count persons in a polygon on every frame of a clip, noting each
change. Three arms run in turn (agent, peer, bare; agent, peer, bare; ...):
- agent: the real pipeline (reader thread, Detector, ByteTracker, occupancy rule
  with settle_s 0, envelopes) via testbed/pipeline.py, fast replay, no broker;
- peer: benchmarks/peer_script.py (OpenCV + ONNX Runtime FP32 + supervision);
- bare: decode + letterbox + inference only, the floor of any implementation.
Each arm's wall time includes opening its model (about 1% of a full clip).
Reports frames per second, CPU ms per frame, agent/peer fps (target >= 2) and
agent/bare CPU per frame (target <= 1.25).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from benchmarks import data
from benchmarks.machine import describe, model_info
from benchmarks.peer_script import count_in_zone
from benchmarks.report import print_table, write_result
from engines.manifest import load_manifest, resolve_model_file
from engines.preprocess import Letterbox
from engines.registry import open_engine
from testbed.pipeline import run_clip

POLYGON = [[0.6, 0.3], [0.95, 0.3], [0.95, 0.75], [0.6, 0.75]]


def agent_arm(clip: Path, manifest: Path) -> dict:
    zones = {"zones": [{"id": "east", "camera": "cam", "polygon": POLYGON, "occupancy": {"settle_s": 0.0}}]}
    run = run_clip(clip, zones, data.models_dir(), manifest=manifest)
    return {"frames": run.frames, "events": len(run.envelopes)}


def peer_arm(clip: Path, manifest: Path) -> dict:
    return count_in_zone(clip, resolve_model_file(load_manifest(manifest), data.models_dir()), POLYGON)


def bare_arm(clip: Path, manifest: Path) -> dict:
    """Decode, letterbox and infer each frame in one thread: what no implementation can skip."""
    m = load_manifest(manifest)
    engine = open_engine("onnxruntime", resolve_model_file(m, data.models_dir()), max_batch=1)
    spec = m.input
    letterbox = Letterbox(
        spec.size_wh, 1, pad_value=spec.pad_value, channel_order=spec.channel_order, mean=spec.mean, std=spec.std
    )
    capture, frames = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG), 0
    while (got := capture.read())[0]:
        engine.infer(letterbox([got[1]])[0])
        frames += 1
    capture.release()
    engine.close()
    return {"frames": frames, "events": None}


ARMS: dict[str, Callable[[Path, Path], dict]] = {"agent": agent_arm, "peer": peer_arm, "bare": bare_arm}


def timed(arm: Callable[[Path, Path], dict], clip: Path, manifest: Path) -> dict:
    c0, w0 = time.process_time(), time.perf_counter()
    out = arm(clip, manifest)
    cpu_s, wall_s = time.process_time() - c0, time.perf_counter() - w0
    return out | {
        "wall_s": round(wall_s, 3), "cpu_s": round(cpu_s, 3), "frames_per_s": round(out["frames"] / wall_s, 2),
        "cpu_ms_per_frame": round(1000 * cpu_s / out["frames"], 3),
        "wall_ms_per_frame": round(1000 * wall_s / out["frames"], 3),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=data.DEFAULT_MANIFEST, help="FP32 model manifest")
    parser.add_argument("--clip", type=Path, default=None, help="clip (default vtest.avi, 795 frames)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of agent, peer, bare")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args(argv)
    clip = (args.clip or data.default_clip()).resolve()
    machine = describe(vars(args) | {"model": model_info(args.manifest, data.models_dir()), "polygon": POLYGON})
    runs: dict[str, list[dict]] = {name: [] for name in ARMS}
    for r in range(args.rounds):
        for name, arm in ARMS.items():
            runs[name].append(timed(arm, clip, args.manifest))
            print(f"round {r + 1} {name}: {runs[name][-1]['frames_per_s']} fps", flush=True)
    keys = ("frames_per_s", "cpu_ms_per_frame", "wall_ms_per_frame")
    median = {name: {k: statistics.median(x[k] for x in rs) for k in keys} for name, rs in runs.items()}

    def ratio(a: str, b: str, key: str) -> float:
        return round(median[a][key] / median[b][key], 3)

    ratios = {
        "agent_over_peer_fps": ratio("agent", "peer", "frames_per_s"),
        "agent_over_bare_cpu_per_frame": ratio("agent", "bare", "cpu_ms_per_frame"),
        "agent_over_bare_wall_per_frame": ratio("agent", "bare", "wall_ms_per_frame"),
    }
    print_table(
        f"median of {args.rounds} alternating rounds",
        ["arm", "frames/s", "CPU ms/frame", "wall ms/frame", "events"],
        [[name, *(m[k] for k in keys), runs[name][0]["events"]] for name, m in median.items()],
    )
    targets = "targets: agent/peer fps >= 2, agent/bare CPU per frame <= 1.25"
    print_table(f"ratios ({targets})", ["ratio", "value"], list(ratios.items()))
    write_result(args.out, "peer", machine, {"runs": runs, "median": median, "ratios": ratios})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
