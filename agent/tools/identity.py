"""The box's own identity: its ECDSA P-256 key and the CSR the device CA signs (`edge-fleet pki sign-csr`).

Made on the box, so the key never leaves it; written 0600, never over an existing file unless forced.
The CA side (signing, the broker ACL) is the operator's: fleet/pki.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engines.atomic import write_atomic

# Ids become MQTT usernames and topic levels: no `/`, `+`, `#`, `$`, spaces.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# `groups` is a topic level of its own (`edge/v1/{site}/groups/{group}/ota`).
_RESERVED = frozenset({"groups"})


class PkiError(Exception):
    """A PKI operation refused: bad name, missing CA, existing file, bad CSR."""


def check_name(name: str, what: str = "name") -> str:
    """Return `name` if it is safe as an MQTT username and a topic level."""
    if not _NAME.fullmatch(name) or name in _RESERVED:
        raise PkiError(
            f"{what} {name!r} must match {_NAME.pattern} and not be one of {sorted(_RESERVED)}"
        )
    return name


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the file mode (0600) is the protection."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_files(files: Mapping[Path, tuple[bytes, int]], *, force: bool = False) -> None:
    """Write `{path: (data, mode)}` all-or-nothing with respect to existing files.

    Every target is checked before anything is written, so a refusal never
    leaves a new key beside an old certificate. Each file is written to a
    temporary file that already has its final mode, then renamed, so a key is
    never readable by others even for an instant.
    """
    if not force:
        refuse_existing(files)
    for path, (data, mode) in files.items():
        write_atomic(path, data, mode)


def refuse_existing(paths: Iterable[Path]) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise PkiError(f"refusing to overwrite {', '.join(existing)} (use --force)")


def make_csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> bytes:
    """A PEM CSR for `device_id`, made on the box so its key never leaves it."""
    check_name(device_id, "device id")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
