"""Only the right device may speak: the shipped mosquitto config and a
rendered ACL, against a real mosquitto, judged by DELIVERY.

A denied PUBLISH may still be acknowledged (mosquitto PUBACKs it, with a
reason code in MQTT 5 and silently in 3.1.1) and a SUBSCRIBE to a filter the
client may not read may still be granted, so no test looks at an ack. Each
one watches what a privileged client actually receives and ends with a
positive control: a message that must arrive and that the broker can only
deliver after anything forbidden sent before it. Seeing the control makes the
absence of the forbidden messages meaningful.

Why the control comes after: mosquitto is single-threaded and routes a
PUBLISH into every matching subscriber's queue before it sends the PUBACK,
and it delivers one client's queue in order. So once a forbidden publish is
PUBACKed, anything the broker let through is already queued ahead of the
control.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fleet.pki import DeviceGrant, init_ca, issue
from tests.support.tls_broker import (
    DEPLOY_CONF,
    Inbox,
    TlsBroker,
    connect,
    mqtt_client,
    subscribe,
    tls_broker,
)

SITE = "s1"
A = f"edge/v1/{SITE}/cam-a"
B = f"edge/v1/{SITE}/cam-b"
DELIVERY_TIMEOUT_S = 5.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TlsBroker]:
    with tls_broker(
        tmp_path,
        devices={"cam-a": DeviceGrant(SITE, ("lobby",)), "cam-b": DeviceGrant(SITE, ("dock",))},
        subscribers=("central",),
        operators=("ops",),
        auditors=("audit",),
        unlisted=("cam-x",),
    ) as running:
        yield running


@pytest.fixture
def online(broker: TlsBroker) -> Iterator[Callable[..., tuple[mqtt.Client, Inbox]]]:
    """Connect an identity and record what it receives; all closed at teardown."""
    clients: list[mqtt.Client] = []

    def make(identity: str, client_id: str | None = None, **connect_kw) -> tuple[mqtt.Client, Inbox]:
        inbox = Inbox()
        client = mqtt_client(broker, identity, client_id or identity)
        client.on_message = lambda c, u, msg: inbox.add(msg)
        assert connect(client, broker, **connect_kw) is not None, f"{identity} could not connect"
        clients.append(client)
        return client, inbox

    yield make
    for client in clients:
        client.disconnect()
        client.loop_stop()


def publish_acked(client: mqtt.Client, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """QoS 1 publish, returning once the broker PUBACKed it (allowed or not)."""
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(DELIVERY_TIMEOUT_S)
    assert info.is_published(), f"no PUBACK for {topic}"


def topics_until(inbox: Inbox, control_topic: str) -> list[str]:
    """Wait for the control message; return every topic received, in order."""
    assert inbox.wait_for(
        lambda msgs: any(m.topic == control_topic for m in msgs), DELIVERY_TIMEOUT_S
    ), f"positive control {control_topic} never arrived"
    return [m.topic for m in inbox.messages]


def test_deploy_config_has_only_the_authenticated_tls_listener() -> None:
    directives = [
        line.split(maxsplit=1)
        for line in DEPLOY_CONF.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    values = {}
    for key, value in directives:
        values.setdefault(key, []).append(value)
    assert values["listener"] == ["8883"]
    assert "port" not in values and "bind_address" not in values  # legacy default listener
    for key, expected in {
        "allow_anonymous": "false",
        "require_certificate": "true",
        "use_identity_as_username": "true",
        "persistence": "true",
    }.items():
        assert values[key] == [expected], key
    assert "acl_file" in values and "password_file" not in values


@pytest.mark.integration
def test_device_publishes_its_own_topics_and_the_subscriber_receives_them(online) -> None:
    central, inbox = online("central")
    subscribe(central, *(f"edge/v1/+/+/{leaf}" for leaf in ("events/#", "status", "health", "ota/status")))
    device, _ = online("cam-a")
    own = [f"{A}/events/intrusion", f"{A}/status", f"{A}/health", f"{A}/ota/status"]
    for topic in own:
        publish_acked(device, topic, b"{}")
    assert inbox.wait_for(lambda msgs: len(msgs) == len(own), DELIVERY_TIMEOUT_S)
    assert [m.topic for m in inbox.messages] == own


@pytest.mark.integration
def test_device_cannot_publish_outside_its_own_topics(online) -> None:
    audit, seen = online("audit")
    subscribe(audit, "#")
    device, _ = online("cam-a")
    forged = [
        f"{B}/events/intrusion",  # speak as B
        f"{B}/status",
        f"{B}/health",
        f"{B}/ota/status",
        f"{B}/ota/model",  # push an update to B
        f"edge/v1/{SITE}/groups/dock/ota/model",  # ... or to B's group
        f"edge/v1/{SITE}/groups/lobby/ota/model",  # even its own group: operators only
        f"{A}/ota/model",  # or to itself
        "edge/v1/s2/cam-a/events/intrusion",  # itself, but claiming another site
        "edge/v1/s1/cam-a",  # a parent of its own topics
        "unrelated/topic",
    ]
    for topic in forged:
        publish_acked(device, topic, b"forged")
    control = f"{A}/events/control"
    publish_acked(device, control, b"control")
    assert topics_until(seen, control) == [control]


@pytest.mark.integration
def test_device_cannot_replace_or_clear_another_devices_retained_status(online) -> None:
    owner, _ = online("cam-b")
    publish_acked(owner, f"{B}/status", b"online", retain=True)
    device, _ = online("cam-a")
    publish_acked(device, f"{B}/status", b"", retain=True)  # an empty retain would clear it
    publish_acked(device, f"{B}/status", b"offline", retain=True)
    # A retained topic holds exactly one message: B's own is the positive control.
    late, inbox = online("audit")
    subscribe(late, f"{B}/status")
    assert inbox.wait_for(lambda msgs: len(msgs) >= 1, DELIVERY_TIMEOUT_S)
    assert [(m.payload, m.retain) for m in inbox.messages] == [(b"online", True)]


@pytest.mark.integration
def test_device_reads_only_its_own_and_its_groups_ota(online) -> None:
    device, inbox = online("cam-a")
    subscribe(
        device,
        "#",
        "edge/v1/#",
        f"{B}/#",
        "edge/v1/+/+/events/#",
        f"edge/v1/{SITE}/groups/dock/ota/#",
        f"$share/steal/{B}/#",
        f"{A}/ota/#",
        f"edge/v1/{SITE}/groups/lobby/ota/#",
    )
    other, _ = online("cam-b")
    for leaf in ("events/intrusion", "status", "health", "ota/status"):
        publish_acked(other, f"{B}/{leaf}", b"b's")
    ops, _ = online("ops")
    publish_acked(ops, f"{B}/ota/model", b"for b")
    publish_acked(ops, f"edge/v1/{SITE}/groups/dock/ota/model", b"for dock")
    own, group = f"{A}/ota/model", f"edge/v1/{SITE}/groups/lobby/ota/model"
    publish_acked(ops, own, b"for a")
    publish_acked(ops, group, b"for lobby")
    # Overlapping filters may deliver a granted message more than once: compare sets.
    assert set(topics_until(inbox, group)) == {own, group}


@pytest.mark.integration
def test_certificate_from_the_ca_but_absent_from_the_acl_gets_nothing(online) -> None:
    """The CA admits, the ACL grants: a box cut from the inventory is mute and deaf."""
    audit, seen = online("audit")
    subscribe(audit, "#")
    stranger, heard = online("cam-x")
    subscribe(stranger, "#", "edge/v1/s1/cam-x/ota/#")
    for leaf in ("events/intrusion", "status", "ota/status"):
        publish_acked(stranger, f"edge/v1/{SITE}/cam-x/{leaf}", b"x")
    ops, _ = online("ops")
    publish_acked(ops, f"edge/v1/{SITE}/cam-x/ota/model", b"for x")
    device, _ = online("cam-a")
    control = f"{A}/events/control"
    publish_acked(device, control, b"control")
    assert topics_until(seen, control) == [f"edge/v1/{SITE}/cam-x/ota/model", control]
    # No topic cam-x may read exists, so its side has no positive control of
    # its own: the auditor's copy of the OTA message shows it was routed, and
    # cam-x's queue is served by the same loop.
    time.sleep(0.3)
    assert heard.messages == []


@pytest.mark.integration
@pytest.mark.parametrize("how", ["anonymous", "foreign-ca"])
def test_connection_without_a_valid_client_certificate_is_refused(
    broker: TlsBroker, online, tmp_path: Path, how: str
) -> None:
    online("cam-a")  # positive control: the broker is up and takes a good cert
    if how == "anonymous":
        client = mqtt_client(broker, None, "anon")
    else:
        # Same CN as a real device, signed by a CA the broker does not trust.
        init_ca(tmp_path / "rogue-ca", "rogue CA")
        rogue = issue(tmp_path / "rogue-ca", "cam-a", tmp_path / "rogue", "device")
        client = mqtt_client(broker, None, "rogue", cert_key=rogue)
    assert connect(client, broker, timeout_s=2.0) is None


@pytest.mark.integration
def test_plaintext_mqtt_gets_no_connack_from_the_tls_port(broker: TlsBroker) -> None:
    """Below paho: a raw MQTT 3.1.1 CONNECT is not answered with a CONNACK."""
    connect_packet = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 0])
    with socket.create_connection(("127.0.0.1", broker.port), timeout=2) as sock:
        sock.sendall(connect_packet)
        try:
            reply = sock.recv(4)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert not reply.startswith(b"\x20")  # 0x20 = CONNACK


SHARED = "$share/central/edge/v1/+/+/events/#"
SESSION_EXPIRY_S = 300


@pytest.mark.integration
def test_shared_subscription_splits_the_load_and_loses_nothing_when_a_member_dies(
    broker: TlsBroker, online
) -> None:
    """Two `central` members share `$share/central/...`; one dies mid-stream.

    What mosquitto 2.0 guarantees, and so what this asserts: it hands each
    message to one member, round robin, and a QoS 1 message belongs to that
    member's *session*, not to the group. When a member's connection dies
    with messages in flight (sent, not PUBACKed), mosquitto does not give
    them to the surviving member, and it keeps routing the member's share of
    new messages into its session queue while it is offline. MQTT 5 (4.8.2)
    only says a server SHOULD re-route them once that session ends; mosquitto
    drops them then. So "nothing lost" holds because members use persistent
    sessions (clean_start=False, a session expiry) with stable client ids and
    a replacement resumes the dead member's session: that is the deployment
    rule this test proves. A member with session expiry 0 would take its
    in-flight messages with it.

    Members ack manually, after recording, as a real consumer acks after
    its write: the dead member first "hangs" (receives, never acks), then
    its socket is cut with no DISCONNECT, like a killed process.
    """
    n_messages = 300
    members = {"central-1": Inbox(), "central-2": Inbox(), "central-2 resumed": Inbox()}
    unacked = Inbox()
    hung = False

    def record(inbox: Inbox):
        def on_message(client, userdata, msg):
            if hung and inbox is members["central-2"]:
                unacked.add(msg)  # received, never processed, never acked
                return
            inbox.add(msg)
            client.ack(msg.mid, msg.qos)
        return on_message

    def member(client_id: str, inbox: Inbox) -> tuple[mqtt.Client, object]:
        client = mqtt_client(broker, "central", client_id, manual_ack=True)
        client.on_message = record(inbox)
        flags = connect(client, broker, clean_start=False, session_expiry_s=SESSION_EXPIRY_S)
        assert flags is not None
        return client, flags

    first, _ = member("central-1", members["central-1"])
    second, _ = member("central-2", members["central-2"])
    subscribe(first, SHARED)
    subscribe(second, SHARED)
    device, _ = online("cam-a")

    def publish(ids: range) -> None:
        for i in ids:
            publish_acked(device, f"{A}/events/intrusion", str(i).encode())

    def ids(*inboxes: Inbox) -> set[int]:
        return {int(p) for inbox in inboxes for p in inbox.payloads()}

    publish(range(0, 100))
    assert members["central-1"].wait_for(lambda _: len(ids(*members.values())) == 100, DELIVERY_TIMEOUT_S)
    split = len(members["central-1"].messages), len(members["central-2"].messages)
    assert min(split) > 0, f"the load was not shared: {split}"

    hung = True
    publish(range(100, 150))
    assert unacked.wait_for(lambda msgs: len(msgs) >= 3, DELIVERY_TIMEOUT_S), "central-2 got none in flight"
    second.loop_stop()  # no reconnect, no DISCONNECT: the process is gone
    second.socket().shutdown(socket.SHUT_RDWR)
    second.socket().close()
    publish(range(150, n_messages))

    # The replacement takes over central-2's session and gets what it held.
    replacement, flags = member("central-2", members["central-2 resumed"])
    assert flags.session_present
    everything = set(range(n_messages))
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while ids(*members.values()) != everything and time.monotonic() < deadline:
        time.sleep(0.05)
    missing = everything - ids(*members.values())
    assert not missing, f"lost {len(missing)} messages: {sorted(missing)[:20]}"
    # How they were saved: the hung member's in-flight messages came back
    # through its resumed session (as DUPs), not through the survivor.
    assert ids(unacked) <= ids(members["central-2 resumed"])
    for client in (first, replacement):
        client.disconnect()
        client.loop_stop()
