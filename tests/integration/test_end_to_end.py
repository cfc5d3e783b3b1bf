"""The walking skeleton end to end: real cameras (a file and a GStreamer RTSP
server), the real yolox_nano model, the tracker and rules, a real Mosquitto and
a subscriber on `edge/v1/#`."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from agent.wire.envelope import Envelope
from agent.wire.status import Status
from testbed.agent_process import AgentProcess, base_config, write_config
from testbed.ground_truth import gt_line_counts

pytestmark = pytest.mark.integration

LINE = [[0.5, 0.2], [0.5, 0.8]]
ZONES = {
    "version": 1,
    "zones": [
        {
            "id": "road-east",
            "camera": "plaza",
            "polygon": [[0.6, 0.3], [0.95, 0.3], [0.95, 0.75], [0.6, 0.75]],
            "intrusion": {"dwell_s": 1.0},
            "occupancy": {"settle_s": 1.0},
        }
    ],
    "lines": [{"id": "mid-path", "camera": "plaza", "points": LINE}],
}


def events_of(messages) -> list[Envelope]:
    return [Envelope.model_validate_json(m.payload) for m in messages if "/events/" in m.topic]


def statuses(messages) -> list[Status]:
    return [Status.model_validate_json(m.payload) for m in messages if m.topic.endswith("/status")]


def test_file_camera_end_to_end_with_line_counts_against_ground_truth(
    tmp_path, mosquitto, subscriber, models_dir, media_dir
):
    sub = subscriber(mosquitto, "edge/v1/#")
    cameras = [{"id": "plaza", "url": str(media_dir / "vtest.avi"), "replay": "fast"}]
    config = write_config(tmp_path, base_config(models_dir, mosquitto.port, cameras), ZONES)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify.sock"))
        notify.settimeout(0.5)
        notes: list[str] = []

        def listen() -> None:  # like systemd: read datagrams as they come, one assignment per line
            while agent.proc.poll() is None:
                with contextlib.suppress(TimeoutError):
                    notes.extend(notify.recv(4096).decode().splitlines())

        env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
        agent = AgentProcess(config, env=env)
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert agent.wait(timeout_s=240) == 0, agent.log_tail()  # ends by itself after the clip
        listener.join(timeout=5)
        notify.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                notes.extend(notify.recv(4096).decode().splitlines())
    # systemd hears READY once the engine and cameras are up, pings while frames flow, and STOPPING
    assert notes.count("READY=1") == 1 and "WATCHDOG=1" in notes and "STOPPING=1" in notes
    assert notes.index("READY=1") < notes.index("WATCHDOG=1")
    sub.wait_for(lambda ms: any(s.state == "offline" for s in statuses(ms)), timeout_s=10)

    events = events_of(sub.messages)
    kinds = {e.kind for e in events}
    assert kinds == {"intrusion", "line_count", "zone_occupancy"}, (kinds, agent.log_tail())
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.device_id == "box-1" and e.camera_id == "plaza" for e in events)
    for m in sub.messages:
        if "/events/" in m.topic:
            kind = m.topic.rsplit("/", 1)[1]
            assert m.topic == f"edge/v1/site-1/box-1/events/{kind}"
            assert json.loads(m.payload)["body"]["kind"] == kind
    intrusions = [e.body for e in events if e.kind == "intrusion"]
    assert {b.state for b in intrusions} == {"started", "ended"}
    assert all(e.subject is not None for e in events if e.kind == "intrusion")

    last = [e.body for e in events if e.kind == "line_count"][-1]
    gt_in, gt_out = gt_line_counts(media_dir / "vtest.gt.txt", LINE)
    print(f"line mid-path: agent in={last.count_in} out={last.count_out}; ground truth in={gt_in} out={gt_out}")
    assert abs(last.count_in - gt_in) <= 0.15 * gt_in
    assert abs(last.count_out - gt_out) <= 0.15 * gt_out

    online = [s for s in statuses(sub.messages) if s.state == "online"]
    assert online and online[0].model.name == "yolox_nano" and online[0].zones_version == 1

    # the audit log holds the start, every alert and the stop, and its chain verifies
    audit = [json.loads(line) for line in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    actions = [r["action"] for r in audit]
    assert actions[0] == "start" and actions[-1] == "stop"
    assert actions.count("alert") == len(intrusions)
    assert online[-1].audit_head in {r["hash"] for r in audit}
    verify = subprocess.run(
        [sys.executable, "-m", "agent.tools.cli", "audit", "verify", str(tmp_path / "state" / "audit.jsonl")]
    )
    assert verify.returncode == 0


def test_rtsp_camera_dies_and_comes_back_while_a_file_camera_keeps_going(
    tmp_path, mosquitto, subscriber, rtsp_server, models_dir, media_dir
):
    server = rtsp_server(media_dir / "vtest.avi", name="gate")
    cameras = [
        {"id": "gate", "url": server.url, "reconnect_min_s": 0.5, "reconnect_max_s": 2.0, "read_timeout_s": 2.0},
        {"id": "plaza", "url": str(media_dir / "vtest.avi"), "replay": "realtime", "loop": True},
    ]
    whole = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    zones = {
        "version": 1,
        "zones": [
            {"id": "all", "camera": cam, "polygon": whole, "occupancy": {"settle_s": 0.3}} for cam in ("gate", "plaza")
        ],
    }
    config = write_config(tmp_path, base_config(models_dir, mosquitto.port, cameras), zones)
    sub = subscriber(mosquitto, "edge/v1/#")
    agent = AgentProcess(config)
    try:

        def camera_events(cam, after=0.0):
            return lambda ms: any(e.camera_id == cam and e.ts / 1000 > after for e in events_of(ms))

        def camera_state(cam, state):
            return lambda ms: any(s.cameras.get(cam) == state for s in statuses(ms))

        sub.wait_for(lambda ms: camera_events("gate")(ms) and camera_events("plaza")(ms), timeout_s=90)
        server.stop()
        outage_start = time.time()
        sub.wait_for(camera_state("gate", "offline"), timeout_s=30)
        # the other camera is not slowed: its events keep coming during the outage
        sub.wait_for(camera_events("plaza", after=outage_start + 1), timeout_s=30)
        server.start()
        restarted = time.time()
        sub.wait_for(lambda ms: any(s.cameras.get("gate") == "online" for s in statuses(ms)[-3:]), timeout_s=60)
        sub.wait_for(camera_events("gate", after=restarted), timeout_s=60)
    finally:
        code = agent.stop()
    assert code == 0, agent.log_tail()
    final = statuses(sub.messages)[-1]
    assert final.state == "offline"  # a clean stop says so (the last will covers crashes)
