"""While the broker cannot be reached, the link says so: a warning naming the broker and why,
repeated with the outbox backlog; once it connects, the backlog is delivered and counted."""

from __future__ import annotations

import secrets
import time

from agent.io.mqtt import MqttLink
from agent.io.outbox import Outbox
from agent.settings.config import BrokerSettings
from agent.wire.privacy import EnvelopeBuilder
from agent.wire.status import Status, to_bytes
from agent.wire.topics import Topics
from testbed.services import Mosquitto
from tests.support.event_source import event_rows

TOPICS = Topics("site-1", "box-1")


def _wait(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_broker_down_is_warned_about_with_the_backlog(tmp_path, captured_logs: list[dict]) -> None:
    broker = Mosquitto(tmp_path / "broker")  # a port of its own, nobody listening yet
    will = to_bytes(Status(state="offline", device_id="box-1", boot_id="0123456789abcdef", ts=0))
    settings = BrokerSettings(host=broker.host, port=broker.port, keepalive_s=5)
    logs = captured_logs
    with Outbox(tmp_path / "outbox.sqlite", max_bytes=2**26, max_age_s=3600) as outbox:
        outbox.put(event_rows(EnvelopeBuilder("box-1", secrets.token_hex(8), b"k" * 32), TOPICS, 7, time.time_ns()))
        link = MqttLink(settings, "box-1", outbox, TOPICS.status, will, warn_every_s=0.3)
        try:
            with link:
                _wait(lambda: len([r for r in logs if r["event"] == "broker_unreachable"]) >= 2)
                assert link.delivered == 0
                broker.start()
                _wait(lambda: outbox.stats().depth == 0)
                assert link.delivered == 7
        finally:
            broker.stop()
    warnings = [r for r in logs if r["event"] == "broker_unreachable"]
    first, second = warnings[:2]
    assert first["log_level"] == "warning" and first["broker"] == f"127.0.0.1:{broker.port}"
    assert first["reason"] == "Connection refused" and first["outbox_depth"] == 7
    assert second["down_s"] > first["down_s"] and second["oldest_age_s"] >= first["oldest_age_s"] > 0
    connected = [r for r in logs if r["event"] == "mqtt_connected"]
    assert connected and connected[0]["broker"] == f"127.0.0.1:{broker.port}"
