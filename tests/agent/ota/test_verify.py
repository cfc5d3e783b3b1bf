"""verify(): valid manifests are accepted, and each cause of refusal has its own error code."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.ota import ErrorCode, Manifest, OtaError
from agent.ota.canonical import canonical_json_bytes
from agent.ota.manifest import MAX_MESSAGE_BYTES
from fleet.publish import sign_bytes
from tests.agent.ota.manifests import DEVICE_ID, NOW, manifest_doc, sign_doc

Check = Callable[..., Manifest]


def _envelope(raw: bytes) -> dict[str, Any]:
    return json.loads(raw)


def _flip_manifest_byte(raw: bytes) -> bytes:
    """Change one byte of the signed manifest text: version 3 -> 7."""
    envelope = _envelope(raw)
    assert '"version":3' in envelope["manifest"]
    envelope["manifest"] = envelope["manifest"].replace('"version":3', '"version":7')
    return canonical_json_bytes(envelope)


def _flip_signature_bit(raw: bytes) -> bytes:
    envelope = _envelope(raw)
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 0x01
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return canonical_json_bytes(envelope)


@pytest.mark.parametrize("kind", ["model", "zones", "config"])
def test_accepts_a_manifest_for_this_device_id(check: Check, fleet_key: Ed25519PrivateKey, kind: str) -> None:
    manifest = check(sign_doc(manifest_doc(kind), fleet_key), last_versions={kind: 2, "other": 9})
    assert (manifest.kind, manifest.version, manifest.target.device_ids) == (kind, 3, [DEVICE_ID])
    assert manifest.expires.utcoffset() == timedelta(0)


def test_accepts_a_manifest_for_one_of_its_groups(check: Check, fleet_key: Ed25519PrivateKey) -> None:
    doc = manifest_doc("zones", target={"groups": ["elsewhere", "canary"]})
    assert check(sign_doc(doc, fleet_key)).target.groups == ["elsewhere", "canary"]


def test_accepts_when_any_trusted_signature_verifies(
    check: Check, fleet_key: Ed25519PrivateKey, stranger_key: Ed25519PrivateKey
) -> None:
    """Key rotation: an envelope signed by the old and the new key passes on devices trusting either."""
    doc = manifest_doc()
    envelope = _envelope(sign_doc(doc, stranger_key))
    envelope["signatures"] += _envelope(sign_doc(doc, fleet_key))["signatures"]
    assert check(canonical_json_bytes(envelope)).version == 3


def test_accepts_an_issue_time_within_the_clock_skew(check: Check, fleet_key: Ed25519PrivateKey) -> None:
    doc = manifest_doc(issued_at="2030-01-02T00:04:00Z")
    assert check(sign_doc(doc, fleet_key)).issued_at > NOW


def test_normalises_offsets_to_utc(check: Check, fleet_key: Ed25519PrivateKey) -> None:
    manifest = check(sign_doc(manifest_doc(expires="2030-02-01T02:00:00+02:00"), fleet_key))
    assert manifest.expires.isoformat() == "2030-02-01T00:00:00+00:00"


def _payload_edit(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        node = doc["payload"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


# (case id, edit of a valid model manifest document before signing, verify() overrides, expected code)
SIGNED_REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None] | None, dict[str, Any], ErrorCode]] = [
    ("older version", None, {"last_versions": {"model": 5}}, ErrorCode.OLD_VERSION),
    ("same version", None, {"last_versions": {"model": 3}}, ErrorCode.SAME_VERSION),
    ("expired", None, {"now": NOW + timedelta(days=31)}, ErrorCode.EXPIRED),
    ("expired at the instant", None, {"now": NOW + timedelta(days=30)}, ErrorCode.EXPIRED),
    ("issued in the future", None, {"now": NOW - timedelta(days=1, minutes=6)}, ErrorCode.NOT_YET_VALID),
    ("other device", None, {"device_id": "box-0002", "groups": ()}, ErrorCode.WRONG_TARGET),
    (
        "other group",
        lambda d: d.update(target={"groups": ["site-lyon"]}),
        {},
        ErrorCode.WRONG_TARGET,
    ),
    ("agent too old", lambda d: d.update(min_agent_version="1.3.0"), {}, ErrorCode.AGENT_TOO_OLD),
    (
        "agent is a pre-release",
        lambda d: d.update(min_agent_version="1.2.0"),
        {"agent_version": "1.2.0-rc.1"},
        ErrorCode.AGENT_TOO_OLD,
    ),
    (
        "newer format, too old to read it",
        lambda d: d.update(min_agent_version="2.0.0", rollout={"canary_percent": 5}),
        {},
        ErrorCode.AGENT_TOO_OLD,
    ),
    ("unknown field", lambda d: d.update(rollout={"canary_percent": 5}), {}, ErrorCode.MALFORMED),
    ("ftp artifact URL", _payload_edit(("artifacts", 0, "url"), "ftp://example.com/m.onnx"), {}, ErrorCode.MALFORMED),
    ("file artifact URL", _payload_edit(("artifacts", 0, "url"), "file:///etc/passwd"), {}, ErrorCode.MALFORMED),
    ("URL with credentials", _payload_edit(("artifacts", 0, "url"), "https://u:p@ex.com/m"), {}, ErrorCode.MALFORMED),
    ("sha256 too short", _payload_edit(("artifacts", 0, "sha256"), "ab" * 31), {}, ErrorCode.MALFORMED),
    ("sha256 upper case", _payload_edit(("artifacts", 0, "sha256"), "AB" * 32), {}, ErrorCode.MALFORMED),
    ("sha256 not hex", _payload_edit(("artifacts", 0, "sha256"), "zz" * 32), {}, ErrorCode.MALFORMED),
    ("artifact too big", _payload_edit(("artifacts", 0, "size_bytes"), 512 * 1024 * 1024 + 1), {}, ErrorCode.MALFORMED),
    ("artifact name escapes", _payload_edit(("artifacts", 0, "name"), "../engine.onnx"), {}, ErrorCode.MALFORMED),
    ("version as a string", lambda d: d.update(version="3"), {}, ErrorCode.MALFORMED),
    ("version zero", lambda d: d.update(version=0), {}, ErrorCode.MALFORMED),
    ("date as a number", lambda d: d.update(expires=1900000000), {}, ErrorCode.MALFORMED),
    ("date without zone", lambda d: d.update(expires="2030-02-01T00:00:00"), {}, ErrorCode.MALFORMED),
    ("expires before issue", lambda d: d.update(expires="2029-12-31T00:00:00Z"), {}, ErrorCode.MALFORMED),
    ("no target", lambda d: d.update(target={"device_ids": [], "groups": []}), {}, ErrorCode.MALFORMED),
    ("bad min_agent_version", lambda d: d.update(min_agent_version="1.2"), {}, ErrorCode.MALFORMED),
    ("unknown kind", _payload_edit(("kind",), "firmware"), {}, ErrorCode.MALFORMED),
    ("golden class unknown", _payload_edit(("golden", "frames", 0, "boxes", 0, 4), 1), {}, ErrorCode.MALFORMED),
    ("golden box inverted", _payload_edit(("golden", "frames", 0, "boxes", 0, 0), 60.0), {}, ErrorCode.MALFORMED),
    ("int8 without report", _payload_edit(("model", "precision"), "int8"), {}, ErrorCode.MALFORMED),
    ("graph hash disagrees", _payload_edit(("model", "sha256"), "0" * 64), {}, ErrorCode.MALFORMED),
    ("manifest not an object", lambda d: d.clear(), {}, ErrorCode.MALFORMED),
]


@pytest.mark.parametrize(
    ("edit", "overrides", "code"), [c[1:] for c in SIGNED_REFUSALS], ids=[c[0] for c in SIGNED_REFUSALS]
)
def test_refuses_a_validly_signed_manifest(
    check: Check,
    fleet_key: Ed25519PrivateKey,
    edit: Callable[[dict[str, Any]], None] | None,
    overrides: dict[str, Any],
    code: ErrorCode,
) -> None:
    doc = manifest_doc()
    if edit is not None:
        edit(doc)
    with pytest.raises(OtaError) as raised:
        check(sign_doc(doc, fleet_key), **overrides)
    assert raised.value.code is code, raised.value.message


def _unsigned_bare(key: Ed25519PrivateKey, stranger: Ed25519PrivateKey) -> bytes:
    return canonical_json_bytes(manifest_doc())


def _unsigned_empty(key: Ed25519PrivateKey, stranger: Ed25519PrivateKey) -> bytes:
    envelope = _envelope(sign_doc(manifest_doc(), key))
    envelope["signatures"] = []
    return canonical_json_bytes(envelope)


def _manifest_byte_flipped(key: Ed25519PrivateKey, stranger: Ed25519PrivateKey) -> bytes:
    return _flip_manifest_byte(sign_doc(manifest_doc(), key))


def _signature_bit_flipped(key: Ed25519PrivateKey, stranger: Ed25519PrivateKey) -> bytes:
    return _flip_signature_bit(sign_doc(manifest_doc(), key))


def _manifest_as_object(key: Ed25519PrivateKey, stranger: Ed25519PrivateKey) -> bytes:
    """The manifest inlined as an object instead of its signed text: not the format."""
    return canonical_json_bytes({**_envelope(sign_doc(manifest_doc(), key)), "manifest": manifest_doc()})


def _zones_oversized(key: Ed25519PrivateKey, stranger: Ed25519PrivateKey) -> bytes:
    return sign_doc(manifest_doc("zones", payload={"kind": "zones", "zones": {"blob": "x" * 70_000}}), key)


def _message_oversized(key: Ed25519PrivateKey, stranger: Ed25519PrivateKey) -> bytes:
    raw = sign_doc(manifest_doc(), key)
    return raw[:-1] + b" " * (MAX_MESSAGE_BYTES - len(raw) + 1) + raw[-1:]


def _not_canonical(key: Ed25519PrivateKey, stranger: Ed25519PrivateKey) -> bytes:
    return sign_bytes(json.dumps(manifest_doc(), indent=1).encode(), key)


def _duplicate_key(key: Ed25519PrivateKey, stranger: Ed25519PrivateKey) -> bytes:
    text = canonical_json_bytes(manifest_doc()).decode()
    return sign_bytes(text.replace('"version":3', '"version":3,"version":9').encode(), key)


# (case id, build raw message from (fleet key, untrusted key), expected code)
RAW_REFUSALS: list[tuple[str, Callable[[Ed25519PrivateKey, Ed25519PrivateKey], bytes], ErrorCode]] = [
    ("bare manifest", _unsigned_bare, ErrorCode.UNSIGNED),
    ("empty signature list", _unsigned_empty, ErrorCode.UNSIGNED),
    ("one manifest byte flipped", _manifest_byte_flipped, ErrorCode.BAD_SIGNATURE),
    ("one signature bit flipped", _signature_bit_flipped, ErrorCode.BAD_SIGNATURE),
    ("untrusted key", lambda k, s: sign_doc(manifest_doc(), s), ErrorCode.UNKNOWN_KEY),
    (
        "untrusted key flipped",
        lambda k, s: _flip_manifest_byte(sign_doc(manifest_doc(), s)),
        ErrorCode.UNKNOWN_KEY,
    ),
    ("not JSON", lambda k, s: b"\x00\xffnot json", ErrorCode.MALFORMED),
    ("JSON but not an object", lambda k, s: b"[1,2,3]", ErrorCode.MALFORMED),
    ("manifest as an object", _manifest_as_object, ErrorCode.MALFORMED),
    ("oversized message", _message_oversized, ErrorCode.MALFORMED),
    ("oversized zones", _zones_oversized, ErrorCode.MALFORMED),
    ("manifest not canonical", _not_canonical, ErrorCode.MALFORMED),
    ("duplicate key in manifest", _duplicate_key, ErrorCode.MALFORMED),
    ("deeply nested", lambda k, s: b"[" * 100_000 + b"]" * 100_000, ErrorCode.MALFORMED),
]


@pytest.mark.parametrize(("build", "code"), [c[1:] for c in RAW_REFUSALS], ids=[c[0] for c in RAW_REFUSALS])
def test_refuses_a_bad_message(
    check: Check,
    fleet_key: Ed25519PrivateKey,
    stranger_key: Ed25519PrivateKey,
    build: Callable[[Ed25519PrivateKey, Ed25519PrivateKey], bytes],
    code: ErrorCode,
) -> None:
    with pytest.raises(OtaError) as raised:
        check(build(fleet_key, stranger_key))
    assert raised.value.code is code, raised.value.message


def test_signature_is_checked_before_anything_else_is_read(check: Check, stranger_key: Ed25519PrivateKey) -> None:
    """A manifest that is wrong in every way but signed by an unknown key reports only the key."""
    doc = manifest_doc(version="x", expires="never", target={}, min_agent_version="99.0.0")
    with pytest.raises(OtaError) as raised:
        check(sign_doc(doc, stranger_key), device_id="nobody", last_versions={"model": 10**9})
    assert raised.value.code is ErrorCode.UNKNOWN_KEY


def test_caller_mistakes_are_not_ota_errors(check: Check, fleet_key: Ed25519PrivateKey) -> None:
    raw = sign_doc(manifest_doc(), fleet_key)
    with pytest.raises(ValueError, match="timezone-aware"):
        check(raw, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="semantic version"):
        check(raw, agent_version="1.2")
