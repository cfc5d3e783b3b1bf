"""Trust files: JSON or YAML, raw base64 or PEM keys, and key ids that must be the key's own."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.ota import TrustFileError, TrustStore
from agent.settings.trust import key_id_of, raw_public_bytes


def _entry(key: Ed25519PrivateKey, pem: bool) -> dict[str, str]:
    public = key.public_key()
    text = (
        public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        if pem
        else base64.b64encode(raw_public_bytes(public)).decode()
    )
    return {"key_id": key_id_of(public), "public_key": text}


def test_key_id_is_the_hash_prefix_of_the_raw_key(fleet_key: Ed25519PrivateKey) -> None:
    raw = raw_public_bytes(fleet_key.public_key())
    assert key_id_of(fleet_key.public_key()) == hashlib.sha256(raw).hexdigest()[:16]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_loads_raw_and_pem_keys(tmp_path: Path, suffix: str) -> None:
    keys = [Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()]
    entries = [_entry(keys[0], pem=False), _entry(keys[1], pem=True)]
    path = tmp_path / f"trust{suffix}"
    path.write_text(json.dumps(entries) if suffix == ".json" else yaml.safe_dump(entries))
    store = TrustStore.from_file(path)
    assert store.key_ids == {e["key_id"] for e in entries}
    assert store.get(entries[1]["key_id"]) == keys[1].public_key()
    assert store.get("0" * 16) is None


def _rsa_pem() -> str:
    rsa = generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return rsa.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([], "no keys"),
        ({"keys": []}, "list"),
        ([{"key_id": "0" * 16, "public_key": "AAAA"}], "32 bytes"),
        ([{"key_id": "0" * 16, "public_key": "not base64!"}], "base64"),
        ([{"key_id": "0" * 16, "public_key": base64.b64encode(bytes(32)).decode()}], "is not its key's id"),
        ([{"key_id": "0" * 16, "public_key": "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"}], "PEM"),
        ([{"key_id": "ABC", "public_key": "AAAA"}], "key_id"),
        ([{"key_id": "0" * 16, "public_key": "AAAA", "extra": 1}], "extra"),
    ],
)
def test_refuses_bad_entries(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(content))
    with pytest.raises(TrustFileError, match=message):
        TrustStore.from_file(path)


def test_refuses_a_non_ed25519_pem_key(tmp_path: Path) -> None:
    path = tmp_path / "trust.yaml"
    path.write_text(yaml.safe_dump([{"key_id": "0" * 16, "public_key": _rsa_pem()}]))
    with pytest.raises(TrustFileError, match="not Ed25519"):
        TrustStore.from_file(path)


def test_refuses_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TrustFileError, match="cannot read"):
        TrustStore.from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TrustFileError, match=r"bad.json: trust file not valid JSON: line 1, column 2: "):
        TrustStore.from_file(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("- [unclosed\n")
    with pytest.raises(TrustFileError, match=r"bad.yaml: trust file not valid YAML: line \d+, column \d+: [^\n]*$"):
        TrustStore.from_file(tmp_path / "bad.yaml")
