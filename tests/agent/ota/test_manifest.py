"""The manifest schema on its own: URL rules, bounds, and the canonical round trip through sign and verify."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from agent.ota import Manifest, SignedManifest
from agent.ota.canonical import canonical_json_bytes, parse_json_strict
from agent.ota.manifest import Artifact, Target
from fleet.publish import sign_bytes
from tests.agent.ota.manifests import GRAPH_SHA256, manifest_doc


def _artifact(url: str) -> Artifact:
    return Artifact.model_validate({"name": "m.onnx", "url": url, "sha256": GRAPH_SHA256, "size_bytes": 1})


@pytest.mark.parametrize(
    "url", ["http://10.0.0.2/m.onnx", "https://updates.example.com:8443/m/v3.onnx?sig=abc", "HTTPS://EXAMPLE.COM/m"]
)
def test_http_and_https_urls_are_accepted(url: str) -> None:
    assert _artifact(url).url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/m.onnx",
        "file:///models/m.onnx",
        "s3://bucket/m.onnx",
        "/models/m.onnx",
        "https:///m.onnx",
        "https://user:secret@example.com/m.onnx",
        "https://example.com/m .onnx",
        "https://example.com:99999/m.onnx",
        "https://[::1/m.onnx",
        "https://example.com/" + "a" * 2048,
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        _artifact(url)


def test_a_target_needs_a_device_or_a_group() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        Target.model_validate({})
    target = Target.model_validate({"groups": ["canary"]})
    assert target.matches("any-box", ["site", "canary"]) and not target.matches("any-box", ["site"])


def test_ids_cannot_inject_mqtt_topic_levels() -> None:
    for bad in ["a/b", "+", "#", "", "a b"]:
        with pytest.raises(ValidationError):
            Target.model_validate({"device_ids": [bad]})


def test_sign_and_verify_see_the_same_manifest(fleet_key: Ed25519PrivateKey, check: Callable[..., Manifest]) -> None:
    """What the fleet validated and signed is exactly what the device reads back."""
    fleet_side = Manifest.model_validate(manifest_doc())
    raw = sign_bytes(canonical_json_bytes(fleet_side.model_dump(mode="json")), fleet_key)
    assert check(raw) == fleet_side


def test_the_signed_text_is_canonical_json(fleet_key: Ed25519PrivateKey) -> None:
    envelope = SignedManifest.model_validate_json(sign_bytes(canonical_json_bytes(manifest_doc()), fleet_key))
    text = envelope.manifest
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("raw", [b'{"a":1,"a":2}', b'{"a":NaN}', b'{"a":Infinity}', b"\xff", b"[" * 5000])
def test_strict_json_refuses_ambiguous_input(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_json_strict(raw)


def test_the_json_schema_documents_every_field() -> None:
    """Operators read the schema: every property of every OTA model carries a description."""
    schema = Manifest.model_json_schema()
    missing = [
        f"{name}.{prop}"
        for name, definition in schema["$defs"].items()
        for prop, spec in definition.get("properties", {}).items()
        if "description" not in spec
    ]
    missing += [f"Manifest.{p}" for p, spec in schema["properties"].items() if "description" not in spec]
    assert missing == []
