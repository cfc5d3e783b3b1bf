"""A central consumer as the product expects one: a stable client id, a
persistent MQTT 5 session (clean_start=False, session expiry), QoS 1, and
de-duplication by `event_id`. It also keeps the health messages it sees."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.wire.status import Health

SESSION_EXPIRY_S = 3600
CONNECT_TIMEOUT_S = 10.0


class DedupConsumer:
    """Subscribes to every device's events and health; `events` maps event_id -> first payload."""

    def __init__(self, host: str, port: int, client_id: str = "central-consumer") -> None:
        self.events: dict[str, bytes] = {}
        self.received = 0
        self.mismatched: list[str] = []  # an event_id seen again with different bytes: a broken retry
        self.health: list[Health] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        client.reconnect_delay_set(0.1, 1.0)

        def on_connect(c: mqtt.Client, *_: object) -> None:
            # subscribe on every connect: a SIGKILLed broker may restart without our session
            c.subscribe([("edge/v1/+/+/events/#", 1), ("edge/v1/+/+/health", 1)])

        client.on_connect = on_connect
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect(host, port, clean_start=False, properties=props)
        client.loop_start()
        self._client = client
        if not subscribed.wait(CONNECT_TIMEOUT_S):
            self.close()
            raise TimeoutError(f"consumer: no SUBACK from {host}:{port}")

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        with self._cond:
            if msg.topic.endswith("/health"):
                self.health.append(Health.model_validate_json(payload))
                return
            self.received += 1
            event_id = json.loads(payload)["event_id"]
            first = self.events.setdefault(event_id, payload)
            if first != payload:
                self.mismatched.append(event_id)
            self._cond.notify_all()

    def wait_for_all(self, expected: set[str], timeout_s: float, quiet_s: float = 10.0) -> set[str]:
        """Wait until every expected event_id arrived, or nothing arrived for `quiet_s`, or
        `timeout_s`; returns the ones still missing."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            last_count, last_change = self.received, time.monotonic()
            while (missing := expected - self.events.keys()) and time.monotonic() < deadline:
                self._cond.wait(min(1.0, deadline - time.monotonic()))
                if self.received != last_count:
                    last_count, last_change = self.received, time.monotonic()
                elif time.monotonic() - last_change > quiet_s:
                    break
        return missing

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
