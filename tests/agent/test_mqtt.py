"""The MQTT link against a real Mosquitto: PUBACK-only deletion, retries with the
same bytes, callbacks that raise, and no subscription at all."""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest

from agent.io.mqtt import MqttLink
from agent.io.outbox import Outbox
from agent.settings.config import BrokerSettings
from agent.wire.privacy import EnvelopeBuilder
from agent.wire.status import Status, to_bytes
from agent.wire.topics import Topics
from tests.support.consumer import DedupConsumer
from tests.support.event_source import event_rows

DEVICE = "box-1"
TOPICS = Topics("site-1", DEVICE)
TIMEOUT_S = 30.0


def wait_until(predicate, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def outbox(tmp_path):
    with Outbox(tmp_path / "outbox.sqlite", max_bytes=2**26, max_age_s=3600) as ob:
        yield ob


def make_link(broker, outbox: Outbox) -> MqttLink:
    will = to_bytes(Status(state="offline", device_id=DEVICE, boot_id="0123456789abcdef", ts=0))
    return MqttLink(BrokerSettings(host=broker.host, port=broker.port, keepalive_s=5), DEVICE, outbox, TOPICS.status, will)


def rows(n: int):
    return event_rows(EnvelopeBuilder(DEVICE, secrets.token_hex(8), b"k" * 32), TOPICS, n, time.time_ns())


def test_rows_leave_the_outbox_only_once_delivered(mosquitto, outbox):
    consumer = DedupConsumer(mosquitto.host, mosquitto.port)
    mosquitto.stop()
    batch = rows(500)
    with make_link(mosquitto, outbox):
        outbox.put(batch)
        time.sleep(1.5)
        assert outbox.stats().depth == 500  # no broker, no PUBACK: nothing leaves
        mosquitto.start()
        wait_until(lambda: outbox.stats().depth == 0)
    assert consumer.wait_for_all({eid for eid, _, _ in batch}, TIMEOUT_S) == set()
    consumer.close()


def test_a_retry_after_reconnect_sends_the_same_bytes(mosquitto, outbox):
    """Frozen broker: the publishes go out but no PUBACK comes back. Killed and restarted,
    the broker gets them again (paho resends them with the same packet ids) and the
    consumer sees exactly the stored payloads."""
    consumer = DedupConsumer(mosquitto.host, mosquitto.port)
    time.sleep(5.5)  # one autosave: the consumer's session survives the SIGKILL below
    batch = rows(200)
    with make_link(mosquitto, outbox) as link:
        wait_until(link.connected.is_set)
        os.kill(mosquitto.pid, signal.SIGSTOP)
        outbox.put(batch)
        wait_until(lambda: link.inflight > 0)
        time.sleep(0.5)
        assert outbox.stats().depth == 200
        mosquitto.kill()  # SIGKILL works on a stopped process
        mosquitto.start()
        wait_until(lambda: outbox.stats().depth == 0)
    assert consumer.wait_for_all({eid for eid, _, _ in batch}, TIMEOUT_S) == set()
    assert {eid: payload for eid, _, payload in batch} == {e: consumer.events[e] for e, _, _ in batch}
    assert consumer.mismatched == []
    consumer.close()


def test_an_exception_in_any_callback_never_stops_the_network_loop(mosquitto, outbox):
    link = make_link(mosquitto, outbox)
    client = link._client
    raised = []
    for name in ("on_connect", "on_disconnect", "on_publish", "on_socket_open"):

        def failing(*args, _original=getattr(client, name), _name=name):
            _original(*args)
            raised.append(_name)
            raise RuntimeError(f"a bug in {_name}")

        setattr(client, name, failing)
    consumer = DedupConsumer(mosquitto.host, mosquitto.port)
    first, second = rows(300), rows(300)
    with link:
        outbox.put(first)
        wait_until(lambda: outbox.stats().depth == 0)
        mosquitto.stop()  # a disconnect and a reconnect, through raising callbacks
        outbox.put(second)
        mosquitto.start()
        wait_until(lambda: outbox.stats().depth == 0)
    assert {"on_connect", "on_disconnect", "on_publish", "on_socket_open"} <= set(raised)
    assert consumer.wait_for_all({eid for eid, _, _ in first + second}, TIMEOUT_S) == set()
    consumer.close()


def test_the_link_subscribes_to_nothing(mosquitto, outbox):
    """Nothing received from the network reaches the agent through this link: it never
    subscribes (the broker's own log says so) and has no message handler."""
    with make_link(mosquitto, outbox) as link:
        wait_until(link.connected.is_set)
        outbox.put(rows(5))
        wait_until(lambda: outbox.stats().depth == 0)
        assert link._client.on_message is None
    log = mosquitto.log_path.read_text()
    assert "New client connected from 127.0.0.1" in log and f"as {DEVICE}" in log
    assert f"Received SUBSCRIBE from {DEVICE}" not in log
