"""The doctor's broker lines: `broker.connect`, `broker.publish_own`, `broker.publish_other`.

Every socket and wait is bounded by `timeout_s`. What is checked, honestly:
- broker.connect: TCP; with TLS, the handshake with the configured CA,
  certificate and key; then an MQTT 5 CONNECT answered by a successful
  CONNACK. The CONNACK matters: under TLS 1.3 a broker refuses a client
  certificate only after the handshake completed on our side.
- broker.publish_own / broker.publish_other: what the broker does with this
  identity's publishes, see `_check_acl` for the evidence used.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import socket
import ssl
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.settings.config import AgentConfig
from agent.tools.checks import CheckResult
from agent.wire.status import DoctorProbe, to_bytes
from agent.wire.topics import Topics

BROKER_TIMEOUT_S = 5.0
DELIVERY_WAIT_S = 1.0
# A device id no certificate can carry (pki.check_name wants a letter or digit first).
OTHER_DEVICE = "_doctor"
_CONNECT, _OWN, _OTHER = "broker.connect", "broker.publish_own", "broker.publish_other"
_DEVICE_CERT_HINT = (
    "the broker may have refused this device's certificate: have the device CA sign this box's CSR "
    "(edge-fleet pki sign-csr) and install the result as broker.tls.cert_file"
)
_REFUSAL_ALERTS = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "REVOKED", "EXPIRED")


class _ProbeError(Exception):
    def __init__(self, detail: str, hint: str) -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint


def _tls_context(config: AgentConfig) -> ssl.SSLContext:
    tls = config.broker.tls
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def _check_transport(config: AgentConfig, timeout_s: float) -> CheckResult:
    """TCP connect and, with TLS, the handshake: the broker's certificate against ca_file."""
    host, port, tls = config.broker.host, config.broker.port, config.broker.tls
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            if tls is None:
                if ipaddress.ip_address(raw.getpeername()[0]).is_loopback:
                    return CheckResult(_CONNECT, True, f"plain TCP to {host}:{port} (loopback: a lab set-up)")
                detail = f"plain TCP to {host}:{port}: events would cross the network unencrypted, unauthenticated"
                return CheckResult(_CONNECT, False, detail, "configure broker.tls (edge-agent provision writes it)")
            with _tls_context(config).wrap_socket(raw, server_hostname=host) as conn:
                not_after = ssl.cert_time_to_seconds(conn.getpeercert()["notAfter"])
                until = dt.datetime.fromtimestamp(not_after, dt.timezone.utc)
                detail = f"{conn.version()} to {host}:{port}, broker certificate verified against {tls.ca_file}"
                return CheckResult(_CONNECT, True, f"{detail} (valid until {until:%Y-%m-%d})")
    except ssl.SSLCertVerificationError as e:
        hint = f"broker.tls.ca_file must be the CA that signed the broker's certificate, which must name {host}"
        return CheckResult(_CONNECT, False, f"{host}:{port}: broker certificate not trusted: {e.verify_message}", hint)
    except ssl.SSLError as e:
        refused = any(alert in str(e) for alert in _REFUSAL_ALERTS)
        hint = _DEVICE_CERT_HINT if refused else "check that cert_file and key_file belong together"
        return CheckResult(_CONNECT, False, f"{host}:{port}: TLS failed: {e.reason or e}", hint)
    except OSError as e:
        hint = "is the broker up? check broker.host and broker.port, DNS, routes and firewalls from this box"
        return CheckResult(_CONNECT, False, f"cannot reach {host}:{port}: {e.strerror or e}", hint)


class _MqttProbe:
    """A short-lived MQTT 5 client that records reason codes, deliveries and socket errors."""

    def __init__(self, config: AgentConfig, timeout_s: float) -> None:
        self._host, self._port, self._timeout_s = config.broker.host, config.broker.port, timeout_s
        self._device_id = config.device_id
        self._cond = threading.Condition()
        self._connack: list[mqtt.ReasonCode] = []
        self._acks: dict[int, mqtt.ReasonCode] = {}
        self._subacks: set[int] = set()
        self._received: list[bytes] = []
        self._errors: list[str] = []
        self.closed = False
        self._tls = config.broker.tls is not None
        # Never the agent's client id: connecting with it would take over the running agent's session.
        client_id = f"{config.device_id}-doctor-{secrets.token_hex(3)}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        self.client.connect_timeout = timeout_s
        if config.broker.tls is not None:
            self.client.tls_set_context(_tls_context(config))
        self.client.on_connect = lambda _c, _u, _f, code, _p: self._record(self._connack.append, code)
        self.client.on_disconnect = lambda *_: self._record(setattr, self, "closed", True)
        self.client.on_publish = lambda _c, _u, mid, code, _p: self._record(self._acks.__setitem__, mid, code)
        self.client.on_subscribe = lambda _c, _u, mid, _codes, _p: self._record(self._subacks.add, mid)
        self.client.on_message = lambda _c, _u, msg: self._record(self._received.append, bytes(msg.payload))
        # paho reports a TLS alert received after the handshake only through its log.
        self.client.on_log = lambda _c, _u, level, text: level == mqtt.MQTT_LOG_ERR and self._errors.append(text)

    def _record(self, update: Callable[..., object], *args: object) -> None:
        with self._cond:
            update(*args)
            self._cond.notify_all()

    def _wait(self, predicate: Callable[[], object], timeout_s: float) -> bool:
        with self._cond:
            return bool(self._cond.wait_for(lambda: predicate() or self.closed, timeout_s) and predicate())

    def __enter__(self) -> _MqttProbe:
        try:
            self.client.connect(self._host, self._port, keepalive=30, clean_start=True)
        except (OSError, ssl.SSLError) as e:
            raise _ProbeError(f"MQTT connect failed: {e}", "see the broker log") from e
        self.client.loop_start()
        if not self._wait(lambda: self._connack, self._timeout_s):
            self.__exit__()
            # the first socket error says why (a TLS alert); later ones only describe the fallout
            why = self._errors[0] if self._errors else "the broker closed the connection or stayed silent"
            # Under TLS 1.3 a broker refuses a client certificate after our side of the handshake is
            # done; the alert naming why often loses the race with the socket closing.
            if self._tls:
                hint = _DEVICE_CERT_HINT + "; if that certificate is right, see the broker log"
            else:
                hint = "see the broker log for why it dropped this client"
            raise _ProbeError(f"no CONNACK ({why})", hint)
        if self._connack[0].is_failure:
            self.__exit__()
            hint = "the broker does not accept this identity: check its certificate and ACL settings"
            raise _ProbeError(f"CONNACK refused: {_code(self._connack[0])}", hint)
        return self

    def __exit__(self, *_: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        """Subscribe and wait for the SUBACK. Its codes are not judged: mosquitto may grant a
        filter and then filter deliveries by the read ACL, so only deliveries tell."""
        _, mid = self.client.subscribe(topic, qos=1)
        self._wait(lambda: mid in self._subacks, self._timeout_s)

    def publish(self, topic: str) -> tuple[mqtt.ReasonCode | None, bool]:
        """QoS 1 publish of a fresh nonce: (PUBACK reason code or None, whether it came back to us)."""
        nonce = to_bytes(DoctorProbe(device_id=self._device_id, nonce=secrets.token_hex(8)))
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = 10  # a probe is worthless later: let the broker drop it
        mid = self.client.publish(topic, nonce, qos=1, properties=props).mid
        self._wait(lambda: mid in self._acks, self._timeout_s)
        code = self._acks.get(mid)
        back = code is not None and not code.is_failure and self._wait(lambda: nonce in self._received, DELIVERY_WAIT_S)
        return code, back


def _code(code: mqtt.ReasonCode) -> str:
    return f"{code} (0x{code.value:02x})"


def _check_acl(probe: _MqttProbe, config: AgentConfig) -> list[CheckResult]:
    """Can publish on its own topic, can NOT on another device's.

    Evidence, strongest first: a delivery back to our own subscription (the
    shipped ACL lets a device read and write its own `doctor` topic, so a
    probe there comes back; subscribers never read that topic), else the MQTT 5 PUBACK reason code: mosquitto
    answers 0x87 Not authorized to a publish its ACL denies, 0x00 or 0x10 to
    one it routes. The other device is `_doctor`, a name no certificate can
    carry, so even an open broker never gets a forged message for a real box.
    """
    own = Topics(config.site, config.device_id).doctor
    other = Topics(config.site, OTHER_DEVICE).doctor
    acl_hint = (
        f"the broker's ACL must let {config.device_id} write its own topics under site {config.site}: add it "
        "to the inventory, re-render with edge-fleet pki acl, then kill -HUP mosquitto"
    )
    probe.subscribe(own)
    probe.subscribe(other)  # where the broker lets us read it, a forged delivery shows
    code, back = probe.publish(own)
    if code is None:
        why = "the broker closed the connection" if probe.closed else "no PUBACK"
        own_result = CheckResult(_OWN, False, f"publish on {own}: {why}", acl_hint)
    elif code.is_failure:
        own_result = CheckResult(_OWN, False, f"publish on {own} refused: {_code(code)}", acl_hint)
    else:
        how = "and delivered back to a subscription" if back else "(PUBACK reason code only: not readable back)"
        own_result = CheckResult(_OWN, True, f"publish on {own} accepted: {_code(code)} {how}")
    if probe.closed:
        return [own_result, CheckResult(_OTHER, False, "not checked: the broker closed the connection", acl_hint)]
    return [own_result, _judge_other(other, *probe.publish(other), probe.closed)]


def _judge_other(topic: str, code: mqtt.ReasonCode | None, delivered: bool, closed: bool) -> CheckResult:
    open_hint = (
        "the broker lets this identity write anywhere: run it with deploy/mosquitto/mosquitto.conf "
        "(allow_anonymous false, require_certificate, use_identity_as_username, acl_file)"
    )
    if code is None and closed:
        return CheckResult(_OTHER, True, f"publish on {topic}: the broker closed the connection (a refusal)")
    if code is None:
        return CheckResult(_OTHER, False, f"publish on {topic}: no PUBACK", "see the broker log")
    if code.is_failure:
        return CheckResult(_OTHER, True, f"publish on {topic} refused by the broker: {_code(code)}")
    how = "and delivered" if delivered else "(a broker with an ACL answers 0x87 Not authorized)"
    return CheckResult(_OTHER, False, f"publish on {topic} accepted: {_code(code)} {how}", open_hint)


def check_broker(config: AgentConfig, timeout_s: float = BROKER_TIMEOUT_S) -> list[CheckResult]:
    """The three broker lines, in order; the publish lines say "not checked" when connecting failed."""
    connect = _check_transport(config, timeout_s)
    if connect.ok:
        try:
            with _MqttProbe(config, timeout_s) as probe:
                connected = CheckResult(_CONNECT, True, f"{connect.detail}; CONNACK {_code(probe._connack[0])}")
                return [connected, *_check_acl(probe, config)]
        except _ProbeError as e:
            connect = CheckResult(_CONNECT, False, f"{connect.detail}, then {e.detail}", e.hint)
    skipped = "not checked: no MQTT connection (see broker.connect)"
    return [connect, *(CheckResult(name, False, skipped, connect.hint) for name in (_OWN, _OTHER))]
