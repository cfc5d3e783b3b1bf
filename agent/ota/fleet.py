"""Fleet side: make a signing key, and sign manifests the way devices verify them.

The private key never goes to a device; devices get the trust entry.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
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
from agent.ota.errors import describe_validation_error
from agent.ota.manifest import MAX_MESSAGE_BYTES, Manifest, Signature, SignedManifest
from agent.ota.trust import TrustEntry, key_id_of, raw_public_bytes


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
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise FleetError(f"{path}: cannot read manifest: {exc}") from exc


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
    envelope = sign_bytes(canonical_json_bytes(model.model_dump(mode="json")), load_private_key(key_path))
    if len(envelope) > MAX_MESSAGE_BYTES:
        raise FleetError(f"signed manifest is {len(envelope)} bytes; devices refuse more than {MAX_MESSAGE_BYTES}")
    return envelope


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
