"""The walking skeleton end to end: real cameras (a file and a GStreamer RTSP
server), the real yolox_nano model, the tracker and rules, a real Mosquitto and
a subscriber on `edge/v1/#`."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from agent.wire.envelope import Envelope
from agent.wire.status import Status
from testbed.agent_process import AgentProcess, base_config, whole_frame_zones, write_config
from testbed.ground_truth import gt_line_counts
from testbed.notify import NotifyListener
from testbed.services import free_port

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
    with NotifyListener(tmp_path / "notify.sock") as systemd:
        agent = AgentProcess(config, env=systemd.env())
        assert agent.wait(timeout_s=240) == 0, agent.log_tail()  # ends by itself after the clip
    notes = systemd.notes
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


def test_an_agent_whose_only_camera_is_offline_keeps_pinging_the_watchdog(tmp_path, mosquitto, models_dir):
    """Waiting for a camera is not hung: were the pings to stop, systemd would restart the agent every 30 s
    (which brings no camera back) and, after five restarts in ten minutes, leave it stopped."""
    url = f"rtsp://127.0.0.1:{free_port()}/cam"  # nothing listens: the camera stays offline, retrying
    cameras = [{"id": "gate", "url": url, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5}]
    config = write_config(tmp_path, base_config(models_dir, mosquitto.port, cameras), whole_frame_zones("gate"))
    with NotifyListener(tmp_path / "notify.sock", watchdog_usec=400_000) as systemd:  # a ping due every 0.2 s
        agent = AgentProcess(config, env=systemd.env())
        try:
            deadline = time.monotonic() + 120
            while "READY=1" not in systemd.notes and agent.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "READY=1" in systemd.notes, agent.log_tail()
            start = time.monotonic()
            time.sleep(3.0)
            pings = systemd.since(start).count("WATCHDOG=1")
        finally:
            code = agent.stop()
    assert pings >= 10, (pings, systemd.notes[-20:])
    assert code == 0, agent.log_tail()
    assert "camera.offline" in agent.log_tail(100_000)


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
    assert final.cameras == {"gate": "stopped", "plaza": "stopped"}  # not their last states: nothing reads them now
