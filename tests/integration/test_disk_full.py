"""A full disk is a state, not a crash (issue 12, item 1).

The agent runs with its state folder on a real 8 MiB tmpfs that another process fills
to the last byte. It keeps running and says so (health `disk.full`, a `disk_full`
warning), counts what it cannot write, starts again with the disk still full (the
counts survive), and once space returns its audit log records the gap, which
`edge-agent audit verify` reports as a gap, not as tampering.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agent.io.audit import GAP_ACTION
from agent.io.zone_editor import TOKEN_HEADER, ZONE_EDITOR_TOKEN_FILE
from agent.ota.report import OtaStatus
from agent.wire.status import Health, Status
from fleet.publish import connect, keygen, ota_topic
from testbed.agent_process import REPO, AgentProcess, base_config, looping_plaza, whole_frame_zones, write_config
from testbed.services import free_port
from tests.integration.test_ota_status import signed
from tests.integration.test_ota_status import zones as ota_zones
from tests.support.services import tmpfs

pytestmark = pytest.mark.integration

ALERTS = whole_frame_zones("plaza", intrusion={"dwell_s": 0.2})  # an alert (audited) per person coming in
WAIT_S = 120


def fill(disk: Path) -> Path:
    """Another process takes every last byte of the disk."""
    hog = disk / "hog"
    with open(hog, "wb", buffering=0) as f:
        for chunk in (65536, 1):  # then the last partial block too
            try:
                while True:
                    f.write(bytes(chunk))
            except OSError:
                pass
    return hog


def healths(messages) -> list[Health]:
    return [Health.model_validate_json(m.payload) for m in messages if m.topic.endswith("/health")]


def statuses(messages) -> list[Status]:
    return [Status.model_validate_json(m.payload) for m in messages if m.topic == "edge/v1/site-1/box-1/status"]


def test_a_full_disk_is_a_state_the_agent_runs_and_restarts_through_and_the_audit_log_notes_the_gap(
    tmp_path, mosquitto, subscriber, models_dir, media_dir
):
    with tmpfs(tmp_path / "disk", "8m") as disk:
        sub = subscriber(mosquitto, "edge/v1/site-1/box-1/#")
        cameras = looping_plaza(media_dir)
        key = keygen(tmp_path / "keys")
        (tmp_path / "golden").mkdir()
        raw = {
            **base_config(models_dir, mosquitto.port, cameras), "state_dir": str(disk), "health": {"interval_s": 1},
            "zone_editor": {"enabled": True, "port": free_port()},
            "ota": {"trust_file": str(key.trust_entry_path), "golden_dir": str(tmp_path / "golden")},
        }  # fmt: skip
        config = write_config(tmp_path / "cfg", raw, ALERTS)
        agent = AgentProcess(config)
        try:
            sub.wait_for(lambda ms: any("/events/intrusion" in m.topic for m in ms), timeout_s=WAIT_S)
            hog = fill(disk)
            # it runs on, and health says the disk is full and what could not be written
            try:
                sub.wait_for(
                    lambda ms: any(h.disk and h.disk.full and h.disk.audit_records_lost > 0 for h in healths(ms)),
                    WAIT_S,
                )
            except AssertionError:
                raise AssertionError(f"last health: {healths(sub.messages)[-1:]}\n{agent.log_tail()}") from None
            assert agent.proc.poll() is None, agent.log_tail()

            # a technician's save and an OTA zones update are refused for want of room: nothing changes
            zones_file = tmp_path / "cfg" / "zones.yaml"
            before = zones_file.read_bytes()
            editor = json.loads((disk / ZONE_EDITOR_TOKEN_FILE).read_text())
            status, answer = _save(editor, ota_zones(2))
            assert status == 507 and "disk" in answer["error"], answer
            client = connect(mosquitto.host, mosquitto.port)
            try:
                topic = ota_topic("site-1", "zones", device_id="box-1")
                client.publish(topic, signed(key, 1), qos=1).wait_for_publish(10)
            finally:
                client.disconnect()
                client.loop_stop()
            ota = sub.wait_for(lambda ms: any(m.topic.endswith("/ota/status") for m in ms), WAIT_S)
            (report,) = [OtaStatus.model_validate_json(m.payload) for m in ota if m.topic.endswith("/ota/status")]
            assert (report.state, report.kind, report.version, report.error.code) == (
                "failed",
                "zones",
                1,
                "storage_failed",
            )
            assert zones_file.read_bytes() == before and report.zones_version == 1
            assert agent.proc.poll() is None, agent.log_tail()
            lost_before = max(h.disk.audit_records_lost for h in healths(sub.messages) if h.disk)
            assert agent.stop() == 0, agent.log_tail()
            records = [json.loads(line) for line in agent.log_path.read_text().splitlines()]
            assert any(r["event"] == "disk_full" and r["level"] == "warning" for r in records)

            # a restart with the disk still full: it comes up, and the count of what was lost is still there
            boots = {s.boot_id for s in statuses(sub.messages)}
            again = AgentProcess(config)
            sub.wait_for(lambda ms: any(s.state == "online" and s.boot_id not in boots for s in statuses(ms)), WAIT_S)
            seen = len(sub.messages)
            sub.wait_for(lambda ms: any(h.disk and h.disk.full for h in healths(ms[seen:])), WAIT_S)
            assert min(h.disk.audit_records_lost for h in healths(sub.messages[seen:])) >= lost_before
            assert again.proc.poll() is None, again.log_tail()
            assert '"zone_editor_started"' in again.log_path.read_text()  # its token in the log, if not on disk

            hog.unlink()  # space returns: the next audit record that fits is preceded by the gap record
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline and GAP_ACTION not in _actions(disk / "audit.jsonl"):
                time.sleep(0.5)
            assert again.stop() == 0, again.log_tail()
        finally:
            agent.kill()
            if "again" in locals():
                again.kill()
        gaps = [r for r in _records(disk / "audit.jsonl") if r["action"] == GAP_ACTION]
        assert gaps and sum(g["details"]["lost"] for g in gaps) >= lost_before
        assert gaps[0]["details"]["error"] == "No space left on device" and "alert" in gaps[0]["details"]["actions"]
        verdict = subprocess.run(
            [sys.executable, "-m", "agent.tools.cli", "audit", "verify", str(disk / "audit.jsonl")],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
        assert verdict.returncode == 0, verdict.stdout
        assert "gap: " in verdict.stdout and "records not written (No space left on device)" in verdict.stdout
        assert "gaps (not tampering" in verdict.stdout and "tampered" not in verdict.stdout


def _save(editor: dict, doc: dict) -> tuple[int, dict]:
    """POST a whole zones document to the running editor, as its page does."""
    body = json.dumps({"base_version": 1, "doc": {"zones": doc["zones"], "lines": []}}).encode()
    headers = {"Content-Type": "application/json", TOKEN_HEADER: editor["token"]}
    request = urllib.request.Request(editor["url"].split("?")[0] + "api/zones", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _actions(path: Path) -> set[str]:
    return {r["action"] for r in _records(path)}
