"""What a technician sees of a running agent: the start-up summary, a broker that cannot be
reached (warned about with its address, then again with the backlog), the periodic summary,
`edge-agent status` against the running process, and the final produced/delivered/queued."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from testbed.agent_process import REPO, AgentProcess, base_config, write_config
from testbed.services import Mosquitto

pytestmark = pytest.mark.integration


def _records(agent: AgentProcess) -> list[dict]:
    out = []
    for line in agent.log_path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"raw": line})
    return out


def _wait_for(agent: AgentProcess, predicate, timeout_s: float, what: str) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [r for r in _records(agent) if predicate(r)]
        if found:
            return found
        assert agent.proc.poll() is None, f"the agent exited while waiting for {what}:\n{agent.log_tail()}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s} s:\n{agent.log_tail()}")


def _status(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.tools.cli", "status", "--config", str(config), "--once", *flags],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_technician_view_of_a_broker_outage(tmp_path: Path, models_dir: Path, media_dir: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")  # its port is chosen; nothing listens there yet
    camera = {"id": "plaza", "url": str(media_dir / "vtest.avi"), "loop": True}
    config = base_config(models_dir, broker.port, [camera]) | {
        "health": {"interval_s": 1, "log_interval_s": 1},
        "zone_editor": {"enabled": True, "port": 0},
    }
    zones = yaml.safe_load((REPO / "examples" / "vtest-zones.yaml").read_text())
    path = write_config(tmp_path / "box", config, zones)
    address = f"127.0.0.1:{broker.port}"
    agent = AgentProcess(path)
    try:
        started = _wait_for(agent, lambda r: r.get("event") == "agent_started", 120, "start-up summary")[0]
        assert started["config"] == str(path) and started["broker"] == address
        assert started["cameras"] == {"plaza": camera["url"]} and started["zones_version"] == zones["version"]
        assert (started["model"], started["backend"], started["precision"]) == ("yolox_nano", "onnxruntime", "fp32")

        # the broker cannot be reached: a warning naming it, repeated with the backlog
        down = _wait_for(
            agent, lambda r: r.get("event") == "broker_unreachable" and r["outbox_depth"] > 0, 90, "warning with a backlog"
        )[0]
        assert down["level"] == "warning" and down["broker"] == address and "refused" in down["reason"].lower()
        assert down["oldest_age_s"] > 0 and down["down_s"] > 0
        summary = _wait_for(agent, lambda r: r.get("event") == "summary" and r["events_total"] > 0, 30, "summary")[-1]
        assert summary["cameras"]["plaza"].startswith("online ") and summary["detect_fps"] > 0
        assert summary["broker"] == f"{address} unreachable" and summary["outbox_depth"] > 0
        assert summary["delivery_lag_s"] > 0 and summary["delivered_total"] == 0

        # `edge-agent status` against the running agent: JSON for scripts, a table for people
        result = _status(path, "--json")
        assert result.returncode == 0, result.stderr
        figures = json.loads(result.stdout)
        assert figures["broker"] == {
            "address": address, "tls": False, "connected": False, "reconnects": 0, "last_error": "Connection refused"
        }  # fmt: skip
        assert figures["cameras"]["plaza"]["state"] == "online" and figures["cameras"]["plaza"]["fps"] > 0
        assert figures["outbox"]["depth"] > 0 and figures["model"]["name"] == "yolox_nano"
        assert figures["config"] == str(path) and figures["zones_version"] == zones["version"]
        assert {(r["camera"], r["kind"]) for r in figures["rules"]} <= {
            ("plaza", "line_count"), ("plaza", "intrusion"), ("plaza", "zone_occupancy")
        } and sum(r["events"] for r in figures["rules"]) == figures["events"] > 0  # fmt: skip
        # the zone editor's page with this boot's token, from its 0600 file (never through the socket)
        token_file = json.loads((tmp_path / "box" / "state" / "zone_editor.json").read_text())
        assert figures["zone_editor"]["page_url"] == token_file["url"] and token_file["token"] in token_file["url"]
        table = _status(path)
        assert table.returncode == 0, table.stderr
        assert f"editor   {token_file['url']}" in table.stdout
        assert f"broker   {address}  UNREACHABLE (Connection refused)" in table.stdout
        assert "plaza" in table.stdout and "RULE" in table.stdout and "yolox_nano  onnxruntime fp32" in table.stdout

        # the broker comes: the backlog goes out
        broker.start()
        _wait_for(agent, lambda r: r.get("event") == "mqtt_connected" and r["broker"] == address, 30, "connect")
        deadline = time.monotonic() + 30
        while (figures := json.loads(_status(path, "--json").stdout))["outbox"]["delivered"] == 0:
            assert time.monotonic() < deadline, figures
            time.sleep(0.5)
        assert figures["broker"]["connected"] is True
        assert agent.stop() == 0
    finally:
        agent.kill()
        broker.stop()
    final = json.loads(agent.log_path.read_text().splitlines()[-1])
    assert set(final) == {"frames", "produced", "delivered", "queued"}
    assert final["produced"] > 0 and final["delivered"] > 0
    records = _records(agent)
    assert not [r for r in records if "raw" in r]  # every line of the log is a JSON record
    stopped = [r for r in records if r.get("event") == "agent_stopped"][0]
    assert stopped["queued"] == final["queued"] and stopped["level"] == ("warning" if final["queued"] else "info")
    # the socket is gone with the agent: status says so and fails
    gone = _status(path)
    assert gone.returncode == 1 and "does not exist: is the agent running" in gone.stderr
