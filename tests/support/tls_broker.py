"""A real mosquitto running the shipped deploy/mosquitto/mosquitto.conf.

`tls_broker(tmp_dir, ...)` makes a throwaway CA and the server and client
certificates with fleet/pki.py, renders the ACL from an inventory, rewrites
only the port and the file paths of the deploy config, starts mosquitto on a
free loopback port and waits until it completes a TLS handshake. Everything
else (no anonymous, client certs, CN as username, persistence) is exactly
what ships, so the tests prove the deployed config and not a test double.

`mqtt_client` and `Inbox` are the small paho v2 / MQTT 5 helpers the tests
share.
"""

from __future__ import annotations

import getpass
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.pki import DeviceGrant, init_ca, issue, render_acl

REPO = Path(__file__).resolve().parents[2]
DEPLOY_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class TlsBroker:
    """A running broker: where it listens and where each identity's files are."""

    port: int
    ca_cert: Path
    certs_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def identity(self, name: str) -> tuple[Path, Path]:
        """(cert, key) of an identity issued for this broker."""
        return self.certs_dir / f"{name}.crt", self.certs_dir / f"{name}.key"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A loopback port free right now (the usual small race is accepted)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def render_conf(template: str, overrides: Mapping[str, str]) -> str:
    """Replace the value of each directive in `overrides`, keep every other line.

    Each overridden directive must appear exactly once in the template, so a
    renamed or duplicated line in the deploy config fails loudly here
    instead of the tests quietly running some other configuration.
    """
    found = dict.fromkeys(overrides, 0)
    lines = []
    for line in template.splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() and not line.startswith("#") else ""
        if key in overrides:
            found[key] += 1
            line = f"{key} {overrides[key]}"
        lines.append(line)
    wrong = {k: n for k, n in found.items() if n != 1}
    if wrong:
        raise ValueError(f"deploy config: directives not found exactly once: {wrong}")
    return "\n".join(lines) + "\n"


def make_pki(
    tmp_dir: Path,
    identities: Mapping[str, str],
) -> tuple[Path, Path]:
    """A CA in tmp_dir/ca and certs in tmp_dir/certs: `server` plus each
    `{name: role}`. Returns (ca_dir, certs_dir)."""
    ca_dir, certs_dir = tmp_dir / "ca", tmp_dir / "certs"
    init_ca(ca_dir, "test device CA")
    issue(ca_dir, "server", certs_dir, "server", sans=("localhost", HOST))
    for name, role in identities.items():
        issue(ca_dir, name, certs_dir, role)
    return ca_dir, certs_dir


@contextmanager
def tls_broker(
    tmp_dir: Path,
    devices: Mapping[str, DeviceGrant],
    subscribers: tuple[str, ...] = (),
    operators: tuple[str, ...] = (),
    auditors: tuple[str, ...] = (),
    unlisted: tuple[str, ...] = (),
    start_timeout_s: float = 10.0,
) -> Iterator[TlsBroker]:
    """Start mosquitto with the deploy config; stop it on exit.

    `unlisted` names get device certificates from the same CA but no ACL
    entry, to show that the ACL, not the CA alone, grants access.
    """
    roles = {
        **{d: "device" for d in (*devices, *unlisted)},
        **{s: "subscriber" for s in subscribers},
        **{o: "operator" for o in operators},
        **{a: "auditor" for a in auditors},
    }
    ca_dir, certs_dir = make_pki(tmp_dir, roles)
    acl_path = tmp_dir / "acl"
    acl_path.write_text(render_acl(devices, subscribers, operators, auditors))
    data_dir = tmp_dir / "data"
    data_dir.mkdir()
    port = free_port()
    conf = render_conf(DEPLOY_CONF.read_text(), {
        "listener": f"{port} {HOST}",
        "cafile": str(ca_dir / "ca.crt"),
        "certfile": str(certs_dir / "server.crt"),
        "keyfile": str(certs_dir / "server.key"),
        "acl_file": str(acl_path),
        "persistence_location": f"{data_dir}/",
        # Run as whoever runs the tests, so the 0600 keys stay readable.
        "user": getpass.getuser(),
    })
    conf_path = tmp_dir / "mosquitto.conf"
    conf_path.write_text(conf)
    log_path = tmp_dir / "mosquitto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([MOSQUITTO, "-c", str(conf_path)], stdout=log, stderr=log)
    broker = TlsBroker(port, ca_dir / "ca.crt", certs_dir, log_path, process)
    try:
        _wait_for_tls(broker, roles, start_timeout_s)
        yield broker
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_tls(broker: TlsBroker, roles: Mapping[str, str], timeout_s: float) -> None:
    """Poll until a TLS handshake with a valid client certificate succeeds."""
    context = ssl.create_default_context(cafile=str(broker.ca_cert))
    if roles:
        context.load_cert_chain(*broker.identity(next(iter(roles))))
    deadline = time.monotonic() + timeout_s
    while True:
        if broker.process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {broker.process.returncode}:\n{broker.log()}")
        try:
            with socket.create_connection((HOST, broker.port), timeout=1) as raw:
                with context.wrap_socket(raw, server_hostname=HOST):
                    return
        except OSError as e:
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto not accepting TLS after {timeout_s}s:\n{broker.log()}") from e
            time.sleep(0.05)


class Inbox:
    """Messages received by one client, with a wait for a condition on them."""

    def __init__(self) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()

    def add(self, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def payloads(self) -> list[bytes]:
        with self._cond:
            return [m.payload for m in self.messages]

    def wait_for(self, predicate: Callable[[list[mqtt.MQTTMessage]], bool], timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout=timeout_s)


def mqtt_client(
    broker: TlsBroker,
    identity: str | None,
    client_id: str,
    *,
    ca_cert: Path | None = None,
    cert_key: tuple[Path, Path] | None = None,
    manual_ack: bool = False,
) -> mqtt.Client:
    """An unconnected paho v2 MQTT 5 client with TLS to the broker.

    identity None means no client certificate (anonymous); `cert_key`
    overrides the identity's files (e.g. a certificate from another CA).
    """
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    certfile, keyfile = cert_key or (broker.identity(identity) if identity else (None, None))
    client.tls_set(
        ca_certs=str(ca_cert or broker.ca_cert),
        certfile=str(certfile) if certfile else None,
        keyfile=str(keyfile) if keyfile else None,
    )
    return client


def connect(
    client: mqtt.Client,
    broker: TlsBroker,
    *,
    clean_start: bool = True,
    session_expiry_s: int = 0,
    timeout_s: float = 5.0,
):
    """Connect and start the loop; return the CONNACK flags, or None if no
    successful CONNACK arrived in time (refused, TLS failure, closed)."""
    answered = threading.Event()
    result: dict = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            result["flags"] = flags
        answered.set()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        # With TLS 1.3 a rejected client certificate only shows after the
        # handshake, as the connection closing before any CONNACK.
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    try:
        client.connect(HOST, broker.port, keepalive=30, clean_start=clean_start, properties=props)
    except (OSError, ssl.SSLError):
        return None
    client.loop_start()
    answered.wait(timeout_s)
    if "flags" not in result:
        client.loop_stop()
        return None
    return result["flags"]


def subscribe(client: mqtt.Client, *filters: str, timeout_s: float = 5.0) -> list:
    """Subscribe at QoS 1 and wait for the SUBACK; return its reason codes.

    A granted code proves nothing about delivery (mosquitto may grant a
    filter and then filter what it delivers by the read ACL): the tests
    assert on what arrives.
    """
    acked = threading.Event()
    codes: list = []

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        codes.extend(reason_codes)
        acked.set()

    client.on_subscribe = on_subscribe
    client.subscribe([(f, mqtt.SubscribeOptions(qos=1)) for f in filters])
    if not acked.wait(timeout_s):
        raise TimeoutError(f"no SUBACK for {filters} in {timeout_s}s")
    return codes
