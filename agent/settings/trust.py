"""The device's trust file: the fleet public keys whose signatures it accepts (the config's
`ota.trust_file`; the OTA verifier checks signatures against it).

A key id is derived from the key itself (`key_id_of`), so a trust file cannot
name a key under another key's id: every entry's stated id is checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agent.settings.documents import read_document
from agent.settings.errors import describe_validation_error

KEY_ID_PATTERN = r"^[0-9a-f]{16}$"
ED25519_PUBLIC_KEY_BYTES = 32


class TrustFileError(ValueError):
    """A trust file that cannot be used; the message names the file and the bad entry."""


class TrustEntry(BaseModel):
    """One trusted fleet key as written in the trust file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=KEY_ID_PATTERN, description="First 16 hex digits of the SHA-256 of the raw public key.")
    public_key: str = Field(
        description="Ed25519 public key: standard base64 of the 32 raw bytes, or a PEM SubjectPublicKeyInfo."
    )


_ENTRIES = TypeAdapter(list[TrustEntry])


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    """The key's id: the first 16 hex digits of the SHA-256 of its raw bytes."""
    return hashlib.sha256(raw_public_bytes(key)).hexdigest()[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its raw bytes or from PEM; ValueError otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"PEM key is {type(key).__name__}, not Ed25519")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc
    if len(raw) != ED25519_PUBLIC_KEY_BYTES:
        raise ValueError(f"raw Ed25519 public keys are {ED25519_PUBLIC_KEY_BYTES} bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


class TrustStore:
    """The set of fleet public keys a device trusts, by key id. Immutable."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id_of(k): k for k in keys}

    @classmethod
    def from_entries(cls, entries: Any, source: str = "trust file") -> TrustStore:
        """Build from parsed trust-file content: a non-empty list of {key_id, public_key}."""
        try:
            parsed = _ENTRIES.validate_python(entries)
        except ValidationError as exc:
            raise TrustFileError(f"{source}: {describe_validation_error(exc)}") from exc
        if not parsed:
            raise TrustFileError(f"{source}: no keys: the device would refuse every update")
        keys = []
        for i, entry in enumerate(parsed):
            try:
                key = parse_public_key(entry.public_key)
            except ValueError as exc:
                raise TrustFileError(f"{source}: entry {i} ({entry.key_id}): {exc}") from exc
            if key_id_of(key) != entry.key_id:
                raise TrustFileError(f"{source}: entry {i}: key_id {entry.key_id} is not its key's id {key_id_of(key)}")
            keys.append(key)
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path) -> TrustStore:
        """Load a trust file: JSON if it ends in .json, YAML otherwise."""
        path = Path(path)
        try:
            entries = read_document(path)
        except ValueError as exc:
            raise TrustFileError(f"{path}: trust file {exc}") from exc
        return cls.from_entries(entries, source=str(path))

    @property
    def key_ids(self) -> frozenset[str]:
        """Ids of the trusted keys."""
        return frozenset(self._keys)

    def get(self, key_id: str) -> Ed25519PublicKey | None:
        """The trusted key with this id, or None."""
        return self._keys.get(key_id)
