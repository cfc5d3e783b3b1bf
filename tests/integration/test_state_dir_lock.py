"""One agent per state folder: a second `edge-agent run` on the same config (the service, and a
technician's run by hand) is refused with the first one's pid and what to do, and the first runs
on untouched; once the first ends, even by SIGKILL, the next one starts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.io.status_socket import SOCKET_NAME, read_status
from agent.tools.cli import EXIT_FAILURE
from testbed.agent_process import REPO, AgentProcess, plaza_config

pytestmark = pytest.mark.integration

WAIT_S = 90


def _events(messages) -> int:
    return sum("/events/" in m.topic for m in messages)


def test_a_second_agent_on_the_same_state_dir_is_refused_and_the_first_runs_on(
    tmp_path, mosquitto, subscriber, models_dir, media_dir
):
    sub = subscriber(mosquitto, "edge/v1/site-1/box-1/#")
    config = plaza_config(tmp_path, models_dir, mosquitto.port, media_dir)
    first = AgentProcess(config)
    try:
        sub.wait_for(lambda ms: _events(ms) > 0, timeout_s=WAIT_S)
        second = subprocess.run(
            [sys.executable, "-m", "agent.tools.cli", "run", "--config", str(config)],
            cwd=REPO, capture_output=True, text=True, timeout=WAIT_S,
        )  # fmt: skip
        assert second.returncode == EXIT_FAILURE, second.stderr
        refused = [json.loads(line) for line in second.stderr.splitlines() if "state_dir_unavailable" in line]
        assert len(refused) == 1 and refused[0]["level"] == "error", second.stderr
        assert f"pid {first.proc.pid}" in refused[0]["error"] and str(tmp_path / "state") in refused[0]["error"]
        assert "systemctl stop edge-agent" in refused[0]["error"]
        # the first is untouched: still running, still answering on its status socket, still sending
        assert first.proc.poll() is None, first.log_tail()
        assert read_status(tmp_path / "state" / SOCKET_NAME)["frames"] > 0
        seen = _events(sub.messages)
        sub.wait_for(lambda ms: _events(ms) > seen, timeout_s=WAIT_S)
    finally:
        first.kill()  # SIGKILL: no clean-up of its own
    third = AgentProcess(config)
    try:
        seen = _events(sub.messages)
        sub.wait_for(lambda ms: _events(ms) > seen, timeout_s=WAIT_S)
        assert third.stop() == 0, third.log_tail()
    finally:
        third.kill()
