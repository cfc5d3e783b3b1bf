"""One measured run of the real agent process: N cameras -> `edge-agent run` -> Mosquitto -> subscriber.

Events: each camera gets the rule mix below. The whole frame and its four
quadrants report occupancy with settle_s 0, so every frame whose person count
changes in any of them yields events; on vtest.avi that is a steady share of
frames. Every event carries its frame's pts as `ts`, so each one is a
frame-to-event sample. A
dedicated one-event-per-frame rule was not used: it would need a benchmark-only
rule kind in the agent's zones schema, and it would load the outbox and broker
with N x fps messages a second that no real deployment sends.

Stage timings, per-camera frame and drop counts come from the agent's own
health message (every 10 s, stage windows of the last 2000 samples), read as
an operator would; decode is probed beside the agent (benchmarks.decode).
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.decode import probe_decode
from benchmarks.live import Source, Stamped, StampingSubscriber, broker, cameras
from benchmarks.procstat import ProcSampler
from benchmarks.report import summary_ms
from testbed.agent_process import AgentProcess, base_config, write_config

STAGES = ("decode", "preprocess", "inference", "postprocess", "tracking", "rules", "publish")
def _box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


OCCUPANCY_ZONES = {
    "all": _box(0, 0, 1, 1), "q1": _box(0, 0, 0.5, 0.5), "q2": _box(0.5, 0, 1, 0.5),
    "q3": _box(0, 0.5, 0.5, 1), "q4": _box(0.5, 0.5, 1, 1),
}  # fmt: skip
# 300 MB for the process plus 25 MB per camera: issue 8's memory target
RSS_BASE_MB, RSS_PER_STREAM_MB = 300.0, 25.0
START_GRACE_S = 120.0


@dataclass(frozen=True, slots=True)
class RunSpec:
    streams: int
    source: Source
    clip: Path
    manifest: Path
    models_dir: Path
    backend: str = "onnxruntime"
    duration_s: float = 60.0
    warmup_s: float = 5.0  # left out of latency and CPU figures, from the agent's first message on
    decode_frames: int = 60
    detect: dict | None = None  # every camera's `detect` block (agent/settings/detect.py); None: every frame
    # file cameras play the clip once: the agent stops at its end (or at warmup + duration), and the
    # counts read back (`counts`) cover that one pass, to compare with benchmarks/detect_accuracy.py's
    once: bool = False
    sessions: int | None = None  # the agent config's model.onnxruntime_sessions (None: its default)


def zones_for(camera_ids: list[str]) -> dict:
    """Per camera: occupancy (settle 0) of the frame and its quadrants, an intrusion zone, a counting line
    (the plaza layout of the end-to-end test) and the plaza's wrong-way and loitering, so tracking and rules
    do a realistic amount of work, and what detecting fewer frames does to the figures can be read back."""
    zones, lines = [], []
    for cam in camera_ids:
        for zone_id, polygon in OCCUPANCY_ZONES.items():
            zones.append({"id": zone_id, "camera": cam, "polygon": polygon, "occupancy": {"settle_s": 0.0}})
        zones.append({
            "id": "east", "camera": cam, "polygon": [[0.6, 0.3], [0.95, 0.3], [0.95, 0.75], [0.6, 0.75]],
            "intrusion": {"dwell_s": 1.0},
        })  # fmt: skip
        # the plaza zone of benchmarks/detect_accuracy.py: its wrong-way and loitering situations
        zones.append({"id": "plaza", "camera": cam, "polygon": _box(0.0, 0.3, 1.0, 1.0), "loitering": {},
                      "wrong_way": {"direction": [1.0, 0.0]}})  # fmt: skip
        lines.append({"id": "mid", "camera": cam, "points": [[0.5, 0.2], [0.5, 0.8]]})
    return {"version": 1, "zones": zones, "lines": lines}


def exit_on_sigterm() -> None:
    """SIGTERM (a `kill`, `timeout`) ends a benchmark as Ctrl-C does: its agent, broker and cameras are stopped
    and its temporary folder removed (they outlived it)."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def _detect_block(spec: RunSpec) -> dict:
    return {} if spec.detect is None else {"detect": spec.detect}


def run_agent(spec: RunSpec) -> dict:
    """Run the agent on `spec.streams` cameras for warmup + duration seconds and measure it."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        with broker(work) as mqtt_broker, cameras(spec.source, spec.clip, spec.streams, work, loop=not spec.once) as cams:
            decode = probe_decode(cams[0]["url"], spec.decode_frames)
            config = base_config(spec.models_dir, mqtt_broker.port, [c | _detect_block(spec) for c in cams])
            config["model"] = {"manifest": str(spec.manifest), "backend": spec.backend}
            if spec.sessions is not None:
                config["model"]["onnxruntime_sessions"] = spec.sessions
            config_path = write_config(work / "agent", config, zones_for([c["id"] for c in cams]))
            sub = StampingSubscriber(mqtt_broker.host, mqtt_broker.port, "edge/v1/#")
            agent = AgentProcess(config_path, duration_s=spec.warmup_s + spec.duration_s)
            try:
                with ProcSampler(agent.proc.pid) as sampler:
                    code = agent.wait(spec.warmup_s + spec.duration_s + START_GRACE_S)
                log_tail = agent.log_tail(20000)
            finally:
                agent.kill()  # only if it is still running: a timed-out wait must not leave it behind
                sub.close()
    if code != 0:
        raise RuntimeError(f"agent exited with {code}:\n{log_tail[-3000:]}")
    return analyse(spec, sub.stamped, sampler, decode, _exit_stats(log_tail))


def analyse(spec: RunSpec, messages: list[Stamped], sampler: ProcSampler, decode: dict, exit_stats: dict) -> dict:
    events = [m for m in messages if "/events/" in m.topic]
    healths = [json.loads(m.payload) for m in messages if m.topic.endswith("/health")]
    # the agent's first message (its retained online status) comes as its pipeline starts
    steady_mono = (messages[0].recv_mono if messages else time.monotonic()) + spec.warmup_s
    latency_ms = [m.recv_ns / 1e6 - json.loads(m.payload)["ts"] for m in events if m.recv_mono >= steady_mono]
    health = healths[-1] if healths else None
    stages = {"decode": decode["cpu_ms"]} | (health["stages_ms"] if health else {})
    return {
        "streams": spec.streams,
        "spec": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(spec).items()},
        "zones_per_camera": zones_for(["cam0"]),
        "end_to_end_ms": summary_ms(latency_ms),
        "events": {"received": len(events), "measured": len(latency_ms), "emitted": exit_stats.get("produced")},
        "counts": counts([json.loads(m.payload) for m in events]) if spec.once else None,
        "frames": _frames(health, exit_stats, decode["source_fps"]),
        "stages_ms": {s: stages[s] for s in STAGES if s in stages},
        "decode_probe": decode,
        "resources": sampler.window(steady_mono)
        | {"rss_budget_mb": RSS_BASE_MB + RSS_PER_STREAM_MB * spec.streams, "health_reports": len(healths)},
    }


def counts(envelopes: list[dict]) -> dict[str, dict[str, int]]:
    """Per camera, over the run: the counting line's in and out (its last line_count) and the wrong-way and
    loitering situations started. Only meaningful for a run whose cameras play the clip once (`RunSpec.once`):
    a looping file keeps its pts increasing, so nothing in the events tells one pass from the next."""
    out: dict[str, dict[str, int]] = {}
    for env in envelopes:  # in the order received: a camera's events come in pts order
        cam, body = env["camera_id"], env["body"]
        figures = out.setdefault(cam, {"line_in": 0, "line_out": 0, "wrong_way": 0, "loitering": 0})
        if body["kind"] == "line_count":
            figures["line_in"], figures["line_out"] = body["count_in"], body["count_out"]
        elif body["kind"] in ("wrong_way", "loitering") and body["state"] == "started":
            figures[body["kind"]] += 1
    return out


def _frames(health: dict | None, exit_stats: dict, nominal_fps: float) -> dict:
    """Frames read and dropped by the readers as of the last health report (up to 10 s before the end)."""
    out = {"processed": exit_stats.get("frames"), "camera_fps_nominal": nominal_fps}
    if health is None:
        return out | {"read": None, "dropped": None, "drop_fraction": None, "camera_fps_min": None, "detect_fps_mean": None}
    cams = health["cameras"].values()
    read, dropped = sum(c["frames"] for c in cams), sum(c["dropped"] for c in cams)
    detect_fps = [c["detect_fps"] for c in cams if c.get("detect_fps") is not None]
    return out | {
        "read": read,
        "dropped": dropped,
        "drop_fraction": round(dropped / read, 5) if read else None,
        "camera_fps_min": min(c["fps"] for c in cams),
        "detect_fps_mean": round(sum(detect_fps) / len(detect_fps), 2) if detect_fps else None,
    }


def _exit_stats(log: str) -> dict:
    """The `{"frames": .., "produced": .., ...}` line `edge-agent run` prints when it stops."""
    for line in reversed(log.splitlines()):
        if line.startswith('{"frames"'):
            return json.loads(line)
    return {}
