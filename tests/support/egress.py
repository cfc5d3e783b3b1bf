"""The egress check: everything that crosses a test broker is recorded and judged.

`EgressWatcher` subscribes to `#` on a broker (reconnecting across broker
restarts, with a persistent session) and `violations()` lists every message that

- is larger than the payload cap,
- carries image magic bytes (JPEG, PNG, GIF, BMP, WebP, TIFF, ISO-BMFF/HEIC),
- carries a base64-looking run (>= 64 characters of [A-Za-z0-9+/=]; a hash in
  lowercase hex up to 64 characters, such as a model's sha256, is allowed),
- is on a topic the agent does not publish on, or does not validate against
  the model of its topic (`agent.tools.schema.TOPICS`: add a suffix there and this
  check covers it).

Messages the fleet sends TO devices (signed OTA manifests, `agent.tools.schema.INBOUND_TOPICS`)
are not egress: they only have to validate as what they claim to be.

Validation uses the pydantic models the published JSON Schemas are generated
from (no JSON Schema validator is among the dependencies).
"""

from __future__ import annotations

import re
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ValidationError

from agent.tools.schema import INBOUND_TOPICS, model_for_topic
from agent.wire.envelope import MAX_PAYLOAD_BYTES

SUBSCRIBE_TIMEOUT_S = 10.0
_IMAGE_MAGIC_AT_START = (b"BM", b"II*\x00", b"MM\x00*")  # short: only meaningful as a file's first bytes
_IMAGE_MAGIC_ANYWHERE = (b"\xff\xd8\xff", b"\x89PNG", b"GIF87a", b"GIF89a", b"WEBPVP8", b"ftypheic", b"ftypavif", b"ftypmif1")
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/=]{64,}")
_HASH = re.compile(rb"[0-9a-f]{1,64}")


def judge(topic: str, payload: bytes) -> str | None:
    """Why this message must not leave a box, or None if it may."""
    inbound = model_for_topic(topic, INBOUND_TOPICS) if model_for_topic(topic) is None else None
    if inbound is not None:
        return _invalid(inbound, payload)
    if len(payload) > MAX_PAYLOAD_BYTES:
        return f"{len(payload)} B, over the {MAX_PAYLOAD_BYTES} B cap"
    for magic in _IMAGE_MAGIC_AT_START:
        if payload.startswith(magic):
            return f"starts with image magic {magic!r}"
    for magic in _IMAGE_MAGIC_ANYWHERE:
        if magic in payload:
            return f"carries image magic {magic!r}"
    for run in _BASE64_RUN.findall(payload):
        if not _HASH.fullmatch(run):
            return f"carries a base64-like run of {len(run)} characters"
    model = model_for_topic(topic)
    if model is None:
        return "a topic the agent does not publish on"
    return _invalid(model, payload)


def _invalid(model: type[BaseModel], payload: bytes) -> str | None:
    try:
        model.model_validate_json(payload)
    except ValidationError as e:
        return f"does not validate as {model.__name__}: {e.errors()[0]['msg']} at {e.errors()[0]['loc']}"
    return None


class EgressWatcher:
    """Records every message on a broker from `#` (paho v2, MQTT 5, QoS 1, persistent session)."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"egress-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        client.reconnect_delay_set(0.1, 1.0)  # back fast after a test restarts the broker
        client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300  # a restarted broker keeps queueing for us
        client.connect(host, port, clean_start=False, properties=props)
        client.loop_start()
        self._client = client
        if not subscribed.wait(SUBSCRIBE_TIMEOUT_S):
            self.close()
            raise TimeoutError(f"egress watcher: no SUBACK from {host}:{port}")

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def violations(self) -> list[str]:
        with self._lock:
            seen = list(self.messages)
        return [f"{topic}: {why}; payload {payload[:80]!r}" for topic, payload in seen if (why := judge(topic, payload))]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
