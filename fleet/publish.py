"""Fleet side: make a signing key, sign manifests the way devices verify them, publish and follow a rollout.

The private key never goes to a device; devices get the trust entry.
Manifests go out as retained MQTT messages (paho-mqtt v2), canary devices
first; devices answer on their retained `.../ota/status`.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from pydantic import ValidationError

from agent.ota.canonical import canonical_json_bytes
from agent.ota.manifest import MAX_MESSAGE_BYTES, Manifest, Signature, SignedManifest
from agent.ota.report import DONE_STATES, FAILED_STATES
from agent.settings.config import ConfigError
from agent.settings.documents import read_document
from agent.settings.errors import describe_validation_error
from agent.settings.patch import check_live_keys, check_patch_values
from agent.settings.trust import TrustEntry, key_id_of, raw_public_bytes
from agent.settings.zones import ZonesDoc


class FleetError(ValueError):
    """Bad input to a fleet command: an invalid manifest, an unusable key; the message says which and why."""


@dataclass(frozen=True, slots=True)
class FleetKey:
    """Where `keygen` wrote a new key pair, and the key's id."""

    key_id: str
    private_key_path: Path
    public_key_path: Path
    trust_entry_path: Path


def keygen(out_dir: Path) -> FleetKey:
    """Create an Ed25519 key pair in `out_dir` (made 0700 if new); never overwrites a file.

    Writes fleet-<key_id>.pem (PKCS#8 private key, mode 0600), fleet-<key_id>.pub.pem
    (public key) and fleet-<key_id>.trust.json (a one-entry trust file, to
    merge into the devices' trust files).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    public_key = private_key.public_key()
    key_id = key_id_of(public_key)
    key = FleetKey(
        key_id=key_id,
        private_key_path=out_dir / f"fleet-{key_id}.pem",
        public_key_path=out_dir / f"fleet-{key_id}.pub.pem",
        trust_entry_path=out_dir / f"fleet-{key_id}.trust.json",
    )
    entry = TrustEntry(key_id=key_id, public_key=base64.b64encode(raw_public_bytes(public_key)).decode("ascii"))
    _write_new(
        key.private_key_path,
        private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
        mode=0o600,
    )
    public_pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    _write_new(key.public_key_path, public_pem, mode=0o644)
    _write_new(key.trust_entry_path, (json.dumps([entry.model_dump()], indent=2) + "\n").encode("utf-8"), mode=0o644)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PEM file; FleetError otherwise."""
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise FleetError(f"{path}: cannot load private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise FleetError(f"{path}: key is {type(key).__name__}, not Ed25519")
    return key


def load_manifest_document(path: Path) -> Any:
    """A manifest document from a file: JSON if it ends in .json, YAML otherwise."""
    path = Path(path)
    try:
        return read_document(path)
    except ValueError as exc:
        raise FleetError(f"{path}: manifest {exc}") from exc


def sign(manifest: Mapping[str, Any] | Path, key_path: Path) -> bytes:
    """Validate a manifest (a document or a JSON/YAML file) and return its signed envelope's bytes.

    Validation happens here too so that a bad manifest is caught by the
    operator, not by every device; what is signed is the canonical JSON of the
    validated model, defaults included, so devices see every value explicitly.
    """
    document = load_manifest_document(manifest) if isinstance(manifest, Path) else manifest
    try:
        model = Manifest.model_validate(document)
    except ValidationError as exc:
        raise FleetError(f"invalid manifest: {describe_validation_error(exc)}") from exc
    check_payload(model)
    if model.expires <= datetime.now(timezone.utc):
        raise FleetError(f"the manifest expired at {model.expires.isoformat()}: every device would refuse it; set expires later")
    envelope = sign_bytes(canonical_json_bytes(model.model_dump(mode="json")), load_private_key(key_path))
    if len(envelope) > MAX_MESSAGE_BYTES:
        raise FleetError(f"signed manifest is {len(envelope)} bytes; devices refuse more than {MAX_MESSAGE_BYTES}")
    return envelope


def check_payload(manifest: Manifest) -> None:
    """FleetError for a payload every device would refuse: a zones document its schema refuses (polygons,
    keys, values), a config patch with a key that cannot change while running or a value its field refuses.
    What depends on a device (its cameras, its model's classes, its config as patched) the device checks."""
    payload = manifest.payload
    try:
        if payload.kind == "zones":
            ZonesDoc.model_validate(payload.zones)
        elif payload.kind == "config":
            check_patch_values(payload.patch)
            check_live_keys(payload.patch)
    except ValidationError as exc:
        raise FleetError(f"invalid zones document: {describe_validation_error(exc)}: every device would refuse it") from exc
    except ConfigError as exc:
        raise FleetError(f"{exc}: every device would refuse it") from exc


def sign_bytes(manifest_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The envelope bytes for already-serialised manifest bytes, signed with one key. No validation."""
    # model_construct: no size check here, so that `sign` can report an oversized result in its own words.
    signature = Signature.model_construct(
        key_id=key_id_of(private_key.public_key()),
        sig=base64.b64encode(private_key.sign(manifest_bytes)).decode("ascii"),
    )
    envelope = SignedManifest.model_construct(manifest=manifest_bytes.decode("utf-8"), signatures=[signature])
    return canonical_json_bytes(envelope.model_dump(mode="json"))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never clobber an existing key; the mode is set at creation so the key is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True, slots=True)
class DeviceOutcome:
    """The last `.../ota/status` seen from one device for the update being rolled out."""

    device_id: str
    state: str
    error_code: str = ""
    error_message: str = ""


def ota_topic(site: str, kind: str, *, device_id: str | None = None, group: str | None = None) -> str:
    """The retained topic a device listens to for updates of `kind`: its own or its group's."""
    if (device_id is None) == (group is None):
        raise ValueError("give exactly one of device_id and group")
    owner = device_id if device_id is not None else f"groups/{group}"
    return f"edge/v1/{site}/{owner}/ota/{kind}"


class RolloutWatch:
    """Follows `edge/v1/{site}/+/ota/status` for one (kind, version) on a connected paho v2 client.

    Subscribe before publishing, so that no status is missed; statuses of
    other updates (another kind or version) are ignored. The subscription is made
    again whenever the client reconnects: a broker restarted during a rollout keeps
    the devices' retained statuses but not this client's subscription.
    """

    def __init__(self, client: mqtt.Client, site: str, kind: str, version: int, timeout_s: float = 10.0) -> None:
        self._site, self._kind, self._version = site, kind, version
        self._cond = threading.Condition()
        self.outcomes: dict[str, DeviceOutcome] = {}
        topic = f"edge/v1/{site}/+/ota/status"
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        client.message_callback_add(topic, self._on_status)
        connected = client.on_connect

        def resubscribe(c: mqtt.Client, userdata: object, flags: object, reason: Any, properties: object) -> None:
            if connected is not None:
                connected(c, userdata, flags, reason, properties)
            if not reason.is_failure:
                c.subscribe(topic, qos=1)

        client.on_connect = resubscribe
        client.subscribe(topic, qos=1)
        if not subscribed.wait(timeout_s):
            raise FleetError(f"broker did not acknowledge the subscription to {site}'s ota/status in {timeout_s} s")

    def _on_status(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            status = json.loads(msg.payload)
            if status.get("kind") != self._kind or status.get("version") != self._version:
                return
            error = status.get("error") or {}
            device_id, state = str(status["device_id"]), str(status["state"])
            outcome = DeviceOutcome(device_id, state, error.get("code", ""), error.get("message", ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # not ours to judge: a broken status only leaves that device pending
        with self._cond:
            self.outcomes[outcome.device_id] = outcome
            self._cond.notify_all()

    def wait(
        self, device_ids: Iterable[str], timeout_s: float, on_done: Callable[[int], None] = lambda n: None
    ) -> dict[str, DeviceOutcome]:
        """Wait until every device in `device_ids` is done (committed) or one failed; returns the outcomes so far.

        With no `device_ids`, waits for `timeout_s` unless a device that answers fails.
        `on_done(n)`: n more of `device_ids` are done (for a progress bar).
        """
        wanted = set(device_ids)

        def done() -> int:
            return sum(1 for d in wanted if d in self.outcomes and self.outcomes[d].state in DONE_STATES)

        def settled() -> bool:
            if not wanted:
                return any(o.state in FAILED_STATES for o in self.outcomes.values())
            states = {d: self.outcomes[d].state for d in wanted if d in self.outcomes}
            return any(s in FAILED_STATES for s in states.values()) or (
                len(states) == len(wanted) and all(s in DONE_STATES for s in states.values())
            )

        deadline, reported = time.monotonic() + timeout_s, 0
        with self._cond:
            while True:
                if (now_done := done()) != reported:
                    on_done(now_done - reported)
                    reported = now_done
                if settled() or (left := deadline - time.monotonic()) <= 0:
                    return dict(self.outcomes)
                self._cond.wait(left)


def connect(host: str, port: int, tls: Mapping[str, Path] | None = None, timeout_s: float = 10.0) -> mqtt.Client:
    """A connected paho v2 (MQTT 5) client with its network loop running; FleetError if the broker is unreachable."""
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if tls:
        client.tls_set(ca_certs=str(tls["ca_file"]), certfile=str(tls["cert_file"]), keyfile=str(tls["key_file"]))
    connected = threading.Event()
    client.on_connect = lambda _c, _u, _f, reason, _p: None if reason.is_failure else connected.set()
    try:
        client.connect(host, port)
    except OSError as exc:
        raise FleetError(f"cannot reach broker {host}:{port}: {exc}") from exc
    client.loop_start()
    if not connected.wait(timeout_s):
        client.loop_stop()
        raise FleetError(f"broker {host}:{port} did not accept the connection in {timeout_s} s")
    return client


def publish(
    client: mqtt.Client,
    envelope: bytes,
    site: str,
    *,
    canaries: Iterable[str] = (),
    device_ids: Iterable[str] = (),
    groups: Iterable[str] = (),
    timeout_s: float = 600.0,
    on_step: Callable[[int], None] = lambda n: None,
) -> dict[str, DeviceOutcome]:
    """Publish a signed manifest retained: to the canary devices first, and once every canary has
    committed, to the other devices and to the groups. Returns the canaries' outcomes (and stops
    there if one failed or timed out: the rest never receive the update).
    `on_step(n)`: n more of the `rollout_steps` are done (a canary committed, a manifest published).
    """
    manifest = Manifest.model_validate_json(SignedManifest.model_validate_json(envelope).manifest)
    canaries = list(canaries)
    watch = RolloutWatch(client, site, manifest.kind, manifest.version)
    for device_id in canaries:
        _publish_retained(client, ota_topic(site, manifest.kind, device_id=device_id), envelope)
    outcomes = watch.wait(canaries, timeout_s, on_step) if canaries else {}
    if any(outcomes.get(d, DeviceOutcome(d, "pending")).state not in DONE_STATES for d in canaries):
        return outcomes
    for device_id in device_ids:
        if device_id not in canaries:
            _publish_retained(client, ota_topic(site, manifest.kind, device_id=device_id), envelope)
            on_step(1)
    for group in groups:
        _publish_retained(client, ota_topic(site, manifest.kind, group=group), envelope)
        on_step(1)
    return outcomes


def rollout_steps(canaries: Iterable[str], device_ids: Iterable[str], groups: Iterable[str]) -> int:
    """How many steps `publish` reports: each canary's commit, then each other device and group published."""
    canaries = set(canaries)
    return len(canaries) + len(set(device_ids) - canaries) + len(set(groups))


def _publish_retained(client: mqtt.Client, topic: str, payload: bytes) -> None:
    info = client.publish(topic, payload, qos=1, retain=True)
    info.wait_for_publish(timeout=10.0)
    if not info.is_published():
        raise FleetError(f"broker did not acknowledge the manifest on {topic}")
