"""Fuzzing verify(): whatever arrives on an OTA topic, it returns a Manifest or raises OtaError, nothing else.

Four sources of input: arbitrary bytes, arbitrary JSON (bare or envelope-shaped),
byte-level mutations of a valid signed message (stopped by the signature), and
structure-level mutations of a valid manifest signed with the trusted key
(which get past the signature and exercise every schema check).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.ota import Manifest, OtaError
from agent.settings.trust import key_id_of
from tests.agent.ota.manifests import manifest_doc, sign_doc

# Modest and reproducible: no example database written into the tree, no deadline on a 2-core CI box.
FUZZ = settings(
    max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["2030-01-01T00:00:00Z", "1.0.0", "model", "zones", "config", "https://x.example/m", "0" * 64])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=16,
)


def _verify_or_refuse(check: Callable[..., Manifest], raw: bytes) -> None:
    try:
        result = check(raw)
    except OtaError as exc:
        event(exc.code.value)  # the spread of refusals shows in --hypothesis-show-statistics
        return
    event("accepted")
    assert isinstance(result, Manifest)


@FUZZ
@given(raw=st.binary(max_size=2048))
def test_arbitrary_bytes(check: Callable[..., Manifest], raw: bytes) -> None:
    _verify_or_refuse(check, raw)


@FUZZ
@given(value=JSON_VALUES, as_envelope=st.booleans(), sig=st.text(max_size=100), key_id=st.text(max_size=20))
def test_arbitrary_json(
    check: Callable[..., Manifest],
    fleet_key: Ed25519PrivateKey,
    value: Any,
    as_envelope: bool,
    sig: str,
    key_id: str,
) -> None:
    if as_envelope:
        signatures = [{"key_id": k, "sig": sig} for k in (key_id, key_id_of(fleet_key.public_key()))]
        value = {"manifest": value, "signatures": signatures}
    _verify_or_refuse(check, json.dumps(value).encode())


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["model", "zones", "config"]))
def test_byte_mutations_of_a_signed_message(
    check: Callable[..., Manifest], fleet_key: Ed25519PrivateKey, data: st.DataObject, kind: str
) -> None:
    raw = bytearray(sign_doc(manifest_doc(kind), fleet_key))
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        position = data.draw(st.integers(0, len(raw) - 1), label="position")
        operation = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]), label="operation")
        if operation == "flip":
            raw[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        elif operation == "delete":
            del raw[position]
        elif operation == "insert":
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=8), label="inserted")
        else:
            del raw[position:]
        if not raw:
            break
    _verify_or_refuse(check, bytes(raw))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document, containers included."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    paths = [prefix] if prefix else []
    for key, child in children:
        paths += _paths(child, (*prefix, key))
    return paths


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["model", "zones", "config"]))
def test_signed_structural_mutations(
    check: Callable[..., Manifest], fleet_key: Ed25519PrivateKey, data: st.DataObject, kind: str
) -> None:
    """A trusted signer's mistakes: replaced, removed and added fields all end as OtaError, never a crash."""
    doc = manifest_doc(kind)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(_paths(doc)), label="path")
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        operation = data.draw(st.sampled_from(["replace", "remove", "add"]), label="operation")
        if operation == "replace":
            parent[path[-1]] = data.draw(JSON_VALUES, label="value")
        elif operation == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(max_size=12), label="new key")] = data.draw(JSON_VALUES, label="value")
        if not _paths(doc):
            break
    _verify_or_refuse(check, sign_doc(doc, fleet_key))


@FUZZ
@given(value=JSON_VALUES)
def test_signed_arbitrary_json(check: Callable[..., Manifest], fleet_key: Ed25519PrivateKey, value: Any) -> None:
    _verify_or_refuse(check, sign_doc(value, fleet_key))


def test_the_signed_mutation_fuzzer_starts_from_an_accepted_manifest(
    check: Callable[..., Manifest], fleet_key: Ed25519PrivateKey
) -> None:
    """Guards the fuzzer: unmutated, its seed passes, so mutations do reach the deeper checks."""
    for kind in ("model", "zones", "config"):
        assert check(sign_doc(manifest_doc(kind), fleet_key)).kind == kind
