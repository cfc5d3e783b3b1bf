"""The zone editor's and the Prometheus exporter's ports held by another program: the cameras' events
still flow, the log and `edge-agent status` say which address and what to do, and each server starts
as soon as its port is free. The agent runs in-process (the retry period shortened) on the sample clip."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from agent.io import port_retry
from agent.io.status_socket import SOCKET_NAME, read_status
from agent.io.zone_editor import ZONE_EDITOR_TOKEN_FILE
from agent.runtime.app import Agent
from agent.settings.config import load_config
from agent.tools.status import render, with_editor_page
from testbed.agent_process import base_config, looping_plaza, whole_frame_zones, write_config
from testbed.services import taken_port

pytestmark = pytest.mark.integration

WAIT_S = 60.0


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_taken_ports_leave_the_analytics_running_and_are_served_once_free(
    tmp_path: Path, mosquitto, subscriber, models_dir: Path, media_dir: Path, captured_logs: list[dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(port_retry, "RETRY_S", 0.2)
    editor_holder, metrics_holder = taken_port(), taken_port()
    editor_port, metrics_port = editor_holder.getsockname()[1], metrics_holder.getsockname()[1]
    cameras = looping_plaza(media_dir)
    raw = {
        **base_config(models_dir, mosquitto.port, cameras),
        "zone_editor": {"enabled": True, "port": editor_port}, "health": {"prometheus_port": metrics_port},
    }  # fmt: skip
    config, zones = load_config(write_config(tmp_path, raw, whole_frame_zones("plaza", intrusion={"dwell_s": 0.2})))
    events = subscriber(mosquitto, "edge/v1/site-1/box-1/events/#")
    agent = Agent(config, zones)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), name="agent", daemon=True)
    runner.start()
    try:
        events.wait_for(lambda ms: any(m.topic.endswith("/events/intrusion") for m in ms), WAIT_S)
        warnings = {r["event"]: r for r in captured_logs if r["log_level"] == "warning"}
        assert warnings["zone_editor_port_unavailable"]["address"] == f"127.0.0.1:{editor_port}"
        assert "zone_editor.port" in warnings["zone_editor_port_unavailable"]["hint"]
        assert warnings["prometheus_port_unavailable"]["address"] == f"127.0.0.1:{metrics_port}"
        assert "health.prometheus_port" in warnings["prometheus_port_unavailable"]["hint"]
        _until(lambda: sum(r["event"] == "zone_editor_port_unavailable" for r in captured_logs) >= 3, "warned again")
        socket_path = config.state_dir / SOCKET_NAME
        table = render(with_editor_page(read_status(socket_path), config.state_dir))
        assert f"editor   NOT SERVING: 127.0.0.1:{editor_port}: Address already in use" in table
        assert not (config.state_dir / ZONE_EDITOR_TOKEN_FILE).exists()

        editor_holder.close()
        metrics_holder.close()
        token_file = config.state_dir / ZONE_EDITOR_TOKEN_FILE
        _until(token_file.exists, "the editor started once its port was free")
        page_url = json.loads(token_file.read_text())["url"]
        assert page_url.startswith(f"http://127.0.0.1:{editor_port}/?token=")
        assert f"editor   {page_url}" in render(with_editor_page(read_status(socket_path), config.state_dir))
        _until(lambda: _answers(metrics_port), "the exporter started once its port was free")
    finally:
        stop.set()
        runner.join(timeout=60)
        editor_holder.close()
        metrics_holder.close()
    assert not runner.is_alive()
    assert agent.final["produced"] > 0


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except ConnectionRefusedError:
        return False
