"""OTA status that a rollout can trust (issue 12, item 5), against the real agent process
and a real Mosquitto, read with the real `edge-fleet ota status`.

- 300 junk messages (not JSON, unsigned, forged, retained ones among them) around a valid
  retained zones manifest: the manifest is still applied, and none of the junk touches
  the retained `ota/status` of that real update, not even when the retained junk comes
  back at the next connection;
- `edge-fleet ota status` tells committed, refused (with its code: `expired`) and
  pending apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.ota.report import OtaStatus
from fleet.publish import connect, keygen, load_private_key, ota_topic, publish, sign
from testbed.agent_process import REPO, AgentProcess, base_config, looping_plaza, write_config
from testbed.services import Subscriber
from tests.agent.ota.docs import zones_manifest_doc
from tests.agent.ota.manifests import sign_doc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.egress_exempt("a hostile peer publishes junk on the update topics on purpose"),
]

DEVICE, SITE = "box-1", "site-1"
ROOT = f"edge/v1/{SITE}/{DEVICE}"
JUNK = 300
TIMEOUT_S = 60.0


def zones(version: int) -> dict[str, Any]:
    square = [[0.1, 0.1], [0.6, 0.1], [0.6, 0.7], [0.1, 0.7]]
    return {"version": version, "zones": [{"id": f"z{version}", "camera": "plaza", "polygon": square, "occupancy": {}}]}


def signed(key, version: int, expires_in: timedelta = timedelta(days=1)) -> bytes:
    now = datetime.now(timezone.utc)
    doc = {**zones_manifest_doc(zones(version + 1), version=version), "min_agent_version": "0.1.0",
           "issued_at": _iso(now - timedelta(days=2)), "expires": _iso(now + expires_in),
           "target": {"device_ids": [DEVICE], "groups": []}}  # fmt: skip
    if expires_in > timedelta(0):
        return sign(doc, key.private_key_path)
    # `edge-fleet ota sign` refuses an expired manifest; one signed before it expired arrives like this
    return sign_doc(doc, load_private_key(key.private_key_path))


def junk(i: int, genuine: bytes) -> bytes:
    """Every kind of message that must not parse or verify."""
    forged = json.loads(genuine)
    forged["manifest"] = forged["manifest"].replace('"version":', '"version":1', 1)  # signed bytes changed
    return [b"not json", json.dumps({"manifest": "{}", "signatures": []}).encode(), json.dumps(forged).encode()][i % 3]


def retained_ota_status(broker) -> OtaStatus:
    sub = Subscriber(broker.host, broker.port, f"{ROOT}/ota/status")
    try:
        (first, *_) = sub.wait_for(lambda ms: bool(ms), timeout_s=10)
    finally:
        sub.close()
    return OtaStatus.model_validate_json(first.payload)


def fleet_status(broker, version: int, timeout_s: float = 5) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "ota", "status", "--site", SITE, "--host", broker.host,
         "--port", str(broker.port), "--kind", "zones", "--version", str(version), "--device", DEVICE,
         "--timeout-s", str(timeout_s)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.returncode, done.stdout


def test_junk_never_hides_a_real_update_and_fleet_status_tells_outcomes_apart(
    tmp_path: Path, mosquitto, subscriber, models_dir: Path, media_dir: Path
) -> None:
    key = keygen(tmp_path / "keys")
    (tmp_path / "golden").mkdir()
    cameras = looping_plaza(media_dir)
    config = base_config(models_dir, mosquitto.port, cameras, device_id=DEVICE)
    config["ota"] = {"trust_file": str(key.trust_entry_path), "golden_dir": str(tmp_path / "golden"),
                     "health_window_s": 1.0, "health_min_frames": 1}  # fmt: skip
    statuses = subscriber(mosquitto, f"{ROOT}/ota/status")
    config_path = write_config(tmp_path / "agent", config, zones(1))
    agent = AgentProcess(config_path)
    client = connect(mosquitto.host, mosquitto.port)
    try:
        outcomes = publish(client, signed(key, 1), SITE, canaries=[DEVICE], timeout_s=TIMEOUT_S)
        assert outcomes[DEVICE].state == "committed", agent.log_tail()

        # the flood: junk on every update topic, retained junk among it, and the real v2 in the middle
        genuine = signed(key, 2)
        topics = [ota_topic(SITE, kind, device_id=DEVICE) for kind in ("model", "config", "zones")]
        for i in range(JUNK):
            if i == JUNK // 2:
                client.publish(topics[2], genuine, qos=1, retain=True)
            client.publish(topics[i % 2], junk(i, genuine), qos=1, retain=i % 2 == 0)
        statuses.wait_for(lambda ms: any(_is(m, "committed", 2) for m in ms), TIMEOUT_S)
        time.sleep(2)  # the tail of the flood has arrived and been refused
        assert (s := retained_ota_status(mosquitto)).state == "committed" and (s.kind, s.version) == ("zones", 2)
        assert _lines(agent, "ota_unverified_refused") >= JUNK - 10  # logged and counted, all but a few
        assert fleet_status(mosquitto, 2)[0] == 0

        # a new connection replays the retained junk: still nothing on the status of the real update
        assert agent.stop() == 0, agent.log_tail()
        agent = AgentProcess(config_path)
        _poll(lambda: _lines(agent, "ota_unverified_refused") > 0, TIMEOUT_S)
        time.sleep(2)
        assert (s := retained_ota_status(mosquitto)).state == "committed" and (s.kind, s.version) == ("zones", 2)
        code, table = fleet_status(mosquitto, 2)
        assert code == 0 and "committed" in table, table

        # a signed but expired manifest: refused with its code, and fleet status says so
        client.publish(topics[2], signed(key, 3, expires_in=timedelta(days=-1)), qos=1, retain=True)
        statuses.wait_for(lambda ms: any(_is(m, "refused", 3) for m in ms), TIMEOUT_S)
        code, table = fleet_status(mosquitto, 3)
        assert code != 0 and "refused" in table and "expired" in table, table
        code, table = fleet_status(mosquitto, 4, timeout_s=2)  # never published
        assert code != 0 and "pending" in table, table
    finally:
        client.disconnect()
        client.loop_stop()
        agent.stop()


def _is(message, state: str, version: int) -> bool:
    status = OtaStatus.model_validate_json(message.payload)
    return (status.state, status.kind, status.version) == (state, "zones", version)


def _lines(agent: AgentProcess, event: str) -> int:
    return sum(1 for line in agent.log_path.read_text(errors="replace").splitlines() if f'"{event}"' in line)


def _poll(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
