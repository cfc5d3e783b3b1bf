"""The MQTT link: paho-mqtt v2, MQTT 5, QoS 1, a persistent session, and a
drain thread that moves outbox rows to the broker.

A row leaves the outbox only on the broker's PUBACK. paho's own queue is not the
buffer (it is in memory and bounded): at most `max_inflight` rows are handed to
paho at a time, and only while connected. The drain reads the outbox forward
from a cursor (never rescanning a backlog) and deletes acknowledged rows in
batches, so a backlog drains at broker speed with flat memory.

Inbound, the link subscribes only to the `subscriptions` it is given (the
agent's OTA topics) and hands each message to `on_message(topic, payload)` on
paho's network thread: the callback must not block (the agent queues the
payload for the OTA worker). Without subscriptions it subscribes to nothing and
has no message handler (tests/agent/test_mqtt.py checks it against the broker).
"""

from __future__ import annotations

import queue
import socket
import sqlite3
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.io.outbox import Outbox
from agent.settings.config import BrokerSettings

log = structlog.get_logger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
BROKER_WARNING_EVERY_S = 30.0
FINAL_STATUS_TIMEOUT_S = 2.0
_DISCONNECT_WITH_WILL = 0x04


class MqttLink:
    """Context manager owning paho's network thread and the outbox drain thread."""

    def __init__(
        self,
        settings: BrokerSettings,
        client_id: str,
        outbox: Outbox,
        will_topic: str,
        will_payload: bytes,
        max_inflight: int = 64,
        subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes], None] | None = None,
        warn_every_s: float = BROKER_WARNING_EVERY_S,
    ) -> None:
        """`subscriptions`: topic filters subscribed (QoS 1) on every connect, `on_message` receives what arrives.
        `warn_every_s`: while the broker cannot be reached, a `broker_unreachable` warning this often."""
        self._settings = settings
        self._subscriptions = list(subscriptions)
        self._outbox = outbox
        self._max_inflight = max_inflight
        self._acks: queue.SimpleQueue = queue.SimpleQueue()  # (mid, reason code)
        self._wake = threading.Event()
        self.inflight = 0
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.reconnects = 0
        self.rejected = 0
        self.delivered = 0  # events the broker acknowledged (PUBACK) since start
        self._warn_every_s = warn_every_s
        self._down_since = time.monotonic()
        self._next_warning = self._down_since + min(5.0, warn_every_s)  # the first connect gets a moment
        self.last_error = ""  # why the broker could not be reached last time
        self._retained: dict[str, bytes] = {}  # re-published on every connect (dict ops are atomic)

        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        client.suppress_exceptions = True  # an exception in a callback must never stop the network loop
        client.max_inflight_messages_set(max_inflight)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.will_set(will_topic, will_payload, qos=1, retain=True)
        if settings.tls is not None:
            client.tls_set(
                ca_certs=str(settings.tls.ca_file),
                certfile=str(settings.tls.cert_file),
                keyfile=str(settings.tls.key_file),
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_connect_fail = self._on_connect_fail
        if on_message is not None:
            client.on_message = lambda _client, _userdata, msg: on_message(msg.topic, bytes(msg.payload))
        self._client = client
        self._drain = threading.Thread(target=self._drain_loop, name="mqtt-drain", daemon=True)

    def __enter__(self) -> MqttLink:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._settings.session_expiry_s
        self._client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=self._settings.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._outbox.add_listener(self._wake.set)
        self._client.loop_start()
        self._drain.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.close(crashed=exc_type is not None)

    def close(self, final_status: tuple[str, bytes] | None = None, crashed: bool = False) -> bool:
        """Stop draining, optionally publish a last retained status, disconnect; idempotent.

        A clean stop disconnects cleanly (the broker drops the will). After a crash
        (`crashed`) whose final status did not reach the broker, the disconnect asks the
        broker to publish the will (MQTT 5 reason 0x04): either way it learns of the death.
        Returns whether the final status was acknowledged."""
        if self._stop.is_set():
            return False
        self._stop.set()
        self._wake.set()
        if self._drain.is_alive():
            self._drain.join(timeout=5)
        delivered = False
        if final_status is not None and self.connected.is_set():
            info = self._client.publish(final_status[0], final_status[1], qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=FINAL_STATUS_TIMEOUT_S)
                delivered = info.is_published()
            except (RuntimeError, ValueError):
                pass
        if crashed and not delivered:
            self._client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=_DISCONNECT_WITH_WILL))
        else:
            self._client.disconnect()
        self._client.loop_stop()
        return delivered

    def set_retained(self, topic: str, payload: bytes) -> None:
        """Publish a retained state message now if connected, and again after every reconnect."""
        self._retained[topic] = payload
        if self.connected.is_set():
            self._client.publish(topic, payload, qos=1, retain=True)

    def publish_now(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """A transient message (health): sent if connected, never stored."""
        if self.connected.is_set():
            self._client.publish(topic, payload, qos=qos)

    # --- paho callbacks (paho's network thread; they never take our locks: paho
    # holds its own mutex while calling on_publish, so acks travel by queue) ---

    def _on_socket_open(self, client, userdata, sock) -> None:
        # events are small and latency matters more than packet count
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"refused: {reason_code}"
            log.warning("mqtt_connect_refused", broker=self.address, reason=str(reason_code))
            return
        log.info("mqtt_connected", broker=self.address, session_present=flags.session_present)
        for topic, payload in list(self._retained.items()):
            client.publish(topic, payload, qos=1, retain=True)
        if self._subscriptions:
            # Every connect: a broker that lost our session would otherwise leave us deaf. Retained
            # messages come again each time; the receiver must take duplicates quietly.
            client.subscribe([(topic, 1) for topic in self._subscriptions])
        self.connected.set()
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its `except OSError` around the connect, and passes no error
        error = sys.exc_info()[1]
        self.last_error = (getattr(error, "strerror", None) or str(error)) if error else "connection failed"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._wake.set()
        if was_connected and not self._stop.is_set():
            self.reconnects += 1
            self.last_error = str(reason_code)
            self._down_since = time.monotonic()
            self._next_warning = self._down_since + min(5.0, self._warn_every_s)
            log.warning("mqtt_disconnected", broker=self.address, reason=str(reason_code))

    @property
    def address(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    def _warn_while_down(self) -> None:
        """While the broker cannot be reached: a warning naming it, repeated with the backlog."""
        now = time.monotonic()
        if now < self._next_warning:
            return
        self._next_warning = now + self._warn_every_s
        backlog = self._outbox.stats()
        log.warning(
            "broker_unreachable", broker=self.address, reason=self.last_error or "no answer yet",
            down_s=round(now - self._down_since, 1), outbox_depth=backlog.depth,
            oldest_age_s=round(backlog.oldest_age_s, 1),
        )  # fmt: skip

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put((mid, reason_code))
        self._wake.set()

    # --- drain thread: the only owner of the in-flight map and the cursor ---

    def _drain_loop(self) -> None:
        # paho mid -> outbox row id. It survives a disconnect: paho keeps its unacknowledged
        # QoS 1 messages and sends them again, with the same packet ids, on reconnect (the
        # MQTT 5 rule for a resumed session), so their PUBACKs still find their rows here.
        # A new process starts again from the outbox: every row still in it is sent again.
        inflight: dict[int, int] = {}
        after_id = 0  # the highest row id handed to paho: the outbox is read from there, never rescanned
        acked: list[int] = []
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            acked.extend(self._take_acks(inflight))
            acked = self._delete(acked)
            self.inflight = len(inflight)
            if not self.connected.is_set():
                self._warn_while_down()
                continue
            room = self._max_inflight - len(inflight)
            if room <= 0:
                continue
            try:
                rows = self._outbox.pending(room, after_id)
            except sqlite3.Error:  # the drain must outlive a bad read: the next wake tries again
                log.exception("outbox_read_failed")
                self._stop.wait(RECONNECT_MIN_S)
                continue
            for row in rows:
                info = self._client.publish(row.topic, row.payload, qos=1)
                # NO_CONN: paho queued it and sends it once connected again
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    break
                inflight[info.mid] = row.row_id
                after_id = row.row_id
            if len(rows) == room:
                self._wake.set()  # more may be waiting

    def _take_acks(self, inflight: dict[int, int]) -> list[int]:
        """Row ids acknowledged since the last call (refused ones included: see below)."""
        acked = []
        while True:
            try:
                mid, reason_code = self._acks.get_nowait()
            except queue.Empty:
                return acked
            row_id = inflight.pop(mid, None)
            if row_id is None:
                continue  # a retained status
            if reason_code.is_failure:
                # the broker refused it for good (e.g. not authorised): retrying cannot help
                self.rejected += 1
                log.error("mqtt_publish_rejected", reason=str(reason_code), event_row=row_id)
            else:
                self.delivered += 1
            acked.append(row_id)

    def _delete(self, acked: list[int]) -> list[int]:
        """Delete acknowledged rows in one transaction; what could not be deleted (disk
        trouble) is tried again next round: the rows are never sent twice in this process."""
        try:
            self._outbox.ack(acked)
        except sqlite3.OperationalError:
            log.exception("outbox_ack_failed", rows=len(acked))
            return acked
        return []
