"""The service fixtures themselves: a real Mosquitto broker, restartable, with persistence."""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest

from testbed.services import Mosquitto, Subscriber

pytestmark = [pytest.mark.integration, pytest.mark.egress_exempt("checks the broker itself with arbitrary payloads")]


def _publish(broker: Mosquitto, topic: str, payload: bytes, retain: bool) -> None:
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5.0)
    client.disconnect()
    client.loop_stop()


def test_mosquitto_delivers_and_keeps_retained_across_restart(
    mosquitto: Mosquitto, subscriber: Callable[..., Subscriber]
) -> None:
    live = subscriber(mosquitto, "edge/v1/#")
    _publish(mosquitto, "edge/v1/site/dev/status", b"online", retain=True)
    _publish(mosquitto, "edge/v1/site/dev/health", b"{}", retain=False)
    got = live.wait_for(lambda msgs: len(msgs) >= 2, timeout_s=5.0)
    assert [(m.topic, m.payload, m.retain) for m in got] == [
        ("edge/v1/site/dev/status", b"online", False),  # live delivery clears the retain flag
        ("edge/v1/site/dev/health", b"{}", False),
    ]

    mosquitto.stop()
    assert not mosquitto.running
    mosquitto.start()
    late = subscriber(mosquitto, "edge/v1/+/+/status")
    got = late.wait_for(lambda msgs: len(msgs) >= 1, timeout_s=5.0)
    assert (got[0].topic, got[0].payload, got[0].retain) == ("edge/v1/site/dev/status", b"online", True)
