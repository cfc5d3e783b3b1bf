"""OTA through the real agent: the agent as a process on a looping file camera at realtime,
real Mosquitto, artifacts served by a real HTTP server on loopback, manifests signed with a
fleet key and published with `fleet publish`'s own function.

One agent run: yolox_nano -> light_person_detector (v1, another input size and class map),
a refused update (v2, the served bytes do not match the signed hash), back to yolox_nano (v3),
then a zones update applied live. Events must flow all along with contiguous `seq`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.ota.report import OtaStatus
from agent.wire.envelope import Envelope
from agent.wire.status import Health, Status
from engines.manifest import sha256_of
from fleet.publish import (
    DeviceOutcome,
    FleetKey,
    connect,
    keygen,
    ota_topic,
    publish,
    sign,
)
from testbed.agent_process import AgentProcess, base_config, write_config
from testbed.services import Mosquitto, Received, Subscriber
from tests.agent.ota.docs import (
    LIGHT_JSON,
    YOLOX_JSON,
    golden_reference,
    model_manifest_doc,
    write_golden_frames,
    zones_manifest_doc,
)
from tests.agent.ota.http_server import ArtifactServer, Served

pytestmark = pytest.mark.integration

DEVICE = "box-1"
SITE = "site-1"
ROOT = f"edge/v1/{SITE}/{DEVICE}"
CAMERA = "plaza"
STRIPS = 6  # occupancy zones side by side: people walking across make events every second or so


def strips(version: int, prefix: str) -> dict[str, Any]:
    """A zones document of STRIPS vertical occupancy zones named `{prefix}{i}`."""
    edges = [i / STRIPS for i in range(STRIPS + 1)]
    zones = [
        {"id": f"{prefix}{i}", "camera": CAMERA, "polygon": [[a, 0.0], [b, 0.0], [b, 1.0], [a, 1.0]],
         "occupancy": {"settle_s": 0.2}}
        for i, (a, b) in enumerate(zip(edges, edges[1:]))
    ]  # fmt: skip
    return {"version": version, "zones": zones}


ZONES, ZONES_V2 = strips(1, "strip"), strips(2, "lane")
ROLLOUT_TIMEOUT_S = 60.0
MAX_EVENT_GAP_S = 4.0


@dataclass
class Fleet:
    key: FleetKey
    server: ArtifactServer
    golden: dict[str, Any]  # model name -> golden reference signed into its manifests
    broker: Mosquitto

    def signed(self, doc: dict[str, Any]) -> bytes:
        """`doc` valid from an hour ago for a day, for the device, signed with the fleet key."""
        now = datetime.now(timezone.utc)
        doc = {**doc, "issued_at": _iso(now - timedelta(hours=1)), "expires": _iso(now + timedelta(days=1)),
               "min_agent_version": "0.1.0", "target": {"device_ids": [DEVICE], "groups": []}}  # fmt: skip
        return sign(doc, self.key.private_key_path)

    def post(self, doc: dict[str, Any], kind: str) -> None:
        """Publish the signed `doc` retained on the device's topic and return at once."""
        client = connect(self.broker.host, self.broker.port)
        try:
            client.publish(ota_topic(SITE, kind, device_id=DEVICE), self.signed(doc), qos=1, retain=True).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()

    def publish(self, doc: dict[str, Any]) -> tuple[DeviceOutcome, float]:
        """Sign `doc` and publish it to the device as `fleet publish --canary` does; the outcome and seconds taken."""
        envelope = self.signed(doc)
        client = connect(self.broker.host, self.broker.port)
        start = time.monotonic()
        try:
            outcomes = publish(client, envelope, SITE, canaries=[DEVICE], timeout_s=ROLLOUT_TIMEOUT_S)
        finally:
            client.disconnect()
            client.loop_stop()
        return outcomes[DEVICE], time.monotonic() - start

    def model(self, model_json: Path, models_dir: Path, version: int, body: bytes | None = None) -> dict[str, Any]:
        """A model manifest for `model_json`, served from the artifact server (`body`: serve these bytes instead)."""
        name = json.loads(model_json.read_text())["file"]
        served = (models_dir / name).read_bytes() if body is None else body
        url = self.server.serve(f"v{version}/{name}", Served(served))
        return model_manifest_doc(model_json, url, self.golden[model_json.stem], version)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Mosquitto, artifact_server: ArtifactServer,  # noqa: F811
          models_dir: Path, media_dir: Path) -> Iterator[Fleet]:  # fmt: skip
    golden_dir = tmp_path / "golden"
    names = write_golden_frames(media_dir / "vtest.avi", golden_dir)
    golden = {j.stem: golden_reference(j, models_dir, golden_dir, names) for j in (YOLOX_JSON, LIGHT_JSON)}
    yield Fleet(keygen(tmp_path / "keys"), artifact_server, golden, mosquitto)


def _statuses(messages: list[Received], suffix: str, model: type) -> list:
    return [model.model_validate_json(m.payload) for m in messages if m.topic == f"{ROOT}/{suffix}"]


def _retained_status(broker: Mosquitto) -> Status:
    """What a newcomer reads on the retained `.../status`."""
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/status")
    try:
        (first, *_) = sub.wait_for(lambda ms: bool(ms), timeout_s=10)
    finally:
        sub.close()
    assert first.retain
    return Status.model_validate_json(first.payload)


def _max_gap_s(events: list[Envelope], start_ms: int, end_ms: int) -> float:
    """The longest time without an event between start_ms and end_ms (event time, ms)."""
    times = [start_ms, *sorted(e.ts for e in events if start_ms < e.ts < end_ms), end_ms]
    return max(b - a for a, b in zip(times, times[1:])) / 1000


def test_model_swaps_a_refused_update_and_a_zones_update_while_the_camera_runs(
    tmp_path: Path, fleet: Fleet, mosquitto: Mosquitto, subscriber, models_dir: Path, media_dir: Path
) -> None:
    cameras = [{"id": CAMERA, "url": str(media_dir / "vtest.avi"), "replay": "realtime", "loop": True}]
    config = base_config(models_dir, mosquitto.port, cameras, device_id=DEVICE)
    config["ota"] = {"trust_file": str(fleet.key.trust_entry_path), "golden_dir": str(tmp_path / "golden"),
                     "health_window_s": 3.0, "health_min_frames": 5}  # fmt: skip
    config["health"] = {"interval_s": 1.0}
    everything = subscriber(mosquitto, f"{ROOT}/#")
    agent = AgentProcess(write_config(tmp_path / "agent", config, ZONES))
    yolox_sha, light_sha = sha256_of(models_dir / "yolox_nano.onnx"), sha256_of(models_dir / "light_person_detector.onnx")
    timings: dict[str, float] = {}
    try:
        everything.wait_for(lambda ms: any(e.ts for e in _events(ms)), timeout_s=60)

        outcome, timings["light"] = fleet.publish(fleet.model(LIGHT_JSON, models_dir, version=1))
        assert outcome.state == "committed", (outcome, agent.log_tail())
        assert _retained_status(mosquitto).model.sha256 == light_sha

        bad = bytearray((models_dir / "light_person_detector.onnx").read_bytes())
        bad[-1] ^= 0xFF  # same length, other bytes: only the hash can tell
        outcome, _ = fleet.publish(fleet.model(LIGHT_JSON, models_dir, version=2, body=bytes(bad)))
        assert (outcome.state, outcome.error_code) == ("failed", "hash_mismatch"), outcome
        assert _retained_status(mosquitto).model.sha256 == light_sha

        outcome, timings["yolox"] = fleet.publish(fleet.model(YOLOX_JSON, models_dir, version=3))
        assert outcome.state == "committed", (outcome, agent.log_tail())
        assert _retained_status(mosquitto).model.sha256 == yolox_sha

        reconnects_before = _reconnects(everything.messages)
        outcome, timings["zones"] = fleet.publish(zones_manifest_doc(ZONES_V2, version=1))
        assert outcome.state == "committed", (outcome, agent.log_tail())
        switched_ms = int(time.time() * 1000)
        everything.wait_for(lambda ms: any(getattr(e.body, "zone_id", "").startswith("lane") for e in _events(ms) if e.ts > switched_ms), 30)
        assert _retained_status(mosquitto).zones_version == 2
        everything.wait_for(lambda ms: len(_health(ms)) and _health(ms)[-1].ts > switched_ms, timeout_s=10)
        assert _reconnects(everything.messages) == reconnects_before == 0  # the camera was never reopened
    finally:
        code = agent.stop()
    assert code == 0, agent.log_tail()

    messages = everything.messages
    events = _events(messages)
    seqs = sorted({e.seq for e in events})
    assert seqs == list(range(1, seqs[-1] + 1)), "an event was lost"
    ota = _statuses(messages, "ota/status", OtaStatus)
    switches = [(s.ts, next(w.ts for w in ota if w.state == "watch" and w.ts >= s.ts)) for s in ota if s.state == "switch"]
    assert len(switches) == 3  # two models and the zones; the refused update never reached its switch
    for switch_ms, live_ms in switches:
        gap_s = _max_gap_s(events, max(switch_ms - 5000, events[0].ts), live_ms + 5000)
        print(f"switch took {(live_ms - switch_ms)} ms; longest event gap around it {gap_s:.2f} s")
    run_gap_s = _max_gap_s(events, events[0].ts, events[-1].ts)
    print(f"rollouts (publish to committed, s): { {k: round(v, 1) for k, v in timings.items()} }; "
          f"{len(events)} events, longest gap over the run {run_gap_s:.2f} s")
    assert run_gap_s < MAX_EVENT_GAP_S  # events never paused, swaps included
    audit = [json.loads(line) for line in (tmp_path / "agent" / "state" / "audit.jsonl").read_text().splitlines()]
    changes = [(r["action"], r["details"].get("new_version")) for r in audit if r["action"].endswith("_change")]
    assert changes == [("model_change", 1), ("model_change", 3), ("zones_change", 2)]


@pytest.mark.parametrize("step", ["download", "validate", "watch"])
def test_agent_sigkilled_during_an_update_serves_old_or_new_and_finishes_by_itself(
    step: str, tmp_path: Path, fleet: Fleet, mosquitto: Mosquitto, subscriber, models_dir: Path, media_dir: Path
) -> None:
    """The real agent process is SIGKILLed as soon as `.../ota/status` reports `step`
    (by then it may be a step further: the verdict below holds wherever the kill lands),
    then started again on the same state."""
    cameras = [{"id": CAMERA, "url": str(media_dir / "vtest.avi"), "replay": "realtime", "loop": True}]
    config = base_config(models_dir, mosquitto.port, cameras, device_id=DEVICE)
    config["ota"] = {"trust_file": str(fleet.key.trust_entry_path), "golden_dir": str(tmp_path / "golden"),
                     "health_window_s": 3.0, "health_min_frames": 5}  # fmt: skip
    config_path = write_config(tmp_path / "agent", config, ZONES)
    old_sha, new_sha = sha256_of(models_dir / "yolox_nano.onnx"), sha256_of(models_dir / "light_person_detector.onnx")
    everything = subscriber(mosquitto, f"{ROOT}/#")
    agent = AgentProcess(config_path)
    try:
        everything.wait_for(lambda ms: bool(_events(ms)), timeout_s=60)
        fleet.post(fleet.model(LIGHT_JSON, models_dir, version=1), "model")
        everything.wait_for(lambda ms: any(s.state == step for s in _statuses(ms, "ota/status", OtaStatus)), 60)
        agent.kill()
        killed = len(everything.messages)
        agent = AgentProcess(config_path)  # the same state dir; the manifest is still retained
        done = everything.wait_for(
            lambda ms: any(s.state in ("committed", "rolled_back", "failed") for s in _statuses(ms[killed:], "ota/status", OtaStatus)),
            timeout_s=ROLLOUT_TIMEOUT_S,
        )
        final = [s for s in _statuses(done[killed:], "ota/status", OtaStatus) if s.state in ("committed", "rolled_back", "failed")][0]
        served = [s.model.sha256 for s in _statuses(done[killed:], "status", Status) if s.state == "online" and s.model]
        assert served and set(served) <= {old_sha, new_sha}, served  # never anything but the old or the new model
        expected = new_sha if final.state == "committed" else old_sha
        assert final.model_sha256 == expected and _retained_status(mosquitto).model.sha256 == expected
        after = int(time.time() * 1000)
        everything.wait_for(lambda ms: any(e.ts > after for e in _events(ms)), timeout_s=30)  # events flow again
        print(f"killed at {step}: the restarted agent ended {final.state}")
    finally:
        code = agent.stop()
    assert code == 0, agent.log_tail()


def _events(messages: list[Received]) -> list[Envelope]:
    return [Envelope.model_validate_json(m.payload) for m in messages if "/events/" in m.topic]


def _health(messages: list[Received]) -> list[Health]:
    return _statuses(messages, "health", Health)


def _reconnects(messages: list[Received]) -> int:
    return _health(messages)[-1].cameras[CAMERA].reconnects
