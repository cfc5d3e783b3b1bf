"""A small PKI for the fleet: one device CA, client certificates whose CN is
the MQTT identity, a server certificate for the broker, and the broker ACL.

The broker runs with `use_identity_as_username`, so a certificate's CN *is*
the MQTT username the ACL is written for. Keys are ECDSA P-256 (small, fast
on a Jetson, supported by every TLS stack we meet), written 0600. No file is
ever overwritten unless `force=True`: re-issuing a key by accident would
silently lock a device out.

Files: `{ca_dir}/ca.crt` and `{ca_dir}/ca.key`; `{out_dir}/{name}.crt` and
`{out_dir}/{name}.key` for an issued identity.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.tools.identity import PkiError, check_name, key_pem, make_csr, new_key, refuse_existing, write_files

Role = Literal["device", "subscriber", "operator", "auditor", "server"]
ROLES: tuple[Role, ...] = ("device", "subscriber", "operator", "auditor", "server")
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_DAYS = 3650
LEAF_DAYS = 825
# A box that booted with a slightly wrong clock must still accept a fresh cert.
BACKDATE = dt.timedelta(minutes=5)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    if days <= 0:
        raise PkiError(f"days must be positive, got {days}")
    now = dt.datetime.now(dt.timezone.utc)
    return now - BACKDATE, now + dt.timedelta(days=days)


def _key_usage(*, sign: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def init_ca(ca_dir: Path, name: str, *, days: int = CA_DAYS, force: bool = False) -> Path:
    """Make a self-signed device CA in `ca_dir`; return the path of `ca.crt`.

    pathlen 0: this CA signs leaves only, never another CA.
    """
    ca_dir = Path(ca_dir)
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    not_before, not_after = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_files(
        {ca_dir / CA_KEY: (key_pem(key), 0o600), ca_dir / CA_CERT: (cert_pem(cert), 0o644)},
        force=force,
    )
    return ca_dir / CA_CERT


def load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key from `ca_dir`, with a clear error if absent."""
    ca_dir = Path(ca_dir)
    try:
        cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    except FileNotFoundError as e:
        raise PkiError(f"no CA in {ca_dir}: {e.filename} is missing (run `pki init-ca` first)") from e
    return cert, key


def _sign_leaf(
    ca_dir: Path, public_key, common_name: str, role: Role, days: int, sans: Iterable[str]
) -> x509.Certificate:
    """A leaf certificate for `public_key`; extensions come from `role` only."""
    if role not in ROLES:
        raise PkiError(f"role must be one of {ROLES}, got {role!r}")
    ca_cert, ca_key = load_ca(ca_dir)
    # OU records the role for audits; the broker authorises on the CN alone.
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    eku = ExtendedKeyUsageOID.SERVER_AUTH if role == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    not_before, not_after = _validity(days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True), critical=True)
        # One EKU per cert: a device cert can never pose as the broker.
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    names = _san_names(sans) if role == "server" else []
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _san_names(sans: Iterable[str]) -> list[x509.GeneralName]:
    """IP literals become iPAddress SANs, anything else a dNSName."""
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    return names


def issue(
    ca_dir: Path,
    common_name: str,
    out_dir: Path,
    role: Role = "device",
    *,
    days: int = LEAF_DAYS,
    sans: Iterable[str] = ("localhost", "127.0.0.1"),
    force: bool = False,
) -> tuple[Path, Path]:
    """Make a key and a certificate for `common_name`; return (cert, key) paths.

    Client roles (device, subscriber, operator, auditor) get clientAuth, the
    CN being their MQTT identity; `server` gets serverAuth and `sans`
    (default: the loopback broker), which clients verify the host against.
    """
    check_name(common_name, f"{role} name")  # also the file name: no `../`
    out_dir = Path(out_dir)
    cert_path, key_path = out_dir / f"{common_name}.crt", out_dir / f"{common_name}.key"
    if not force:  # fail before signing anything if the files are there
        refuse_existing([cert_path, key_path])
    key = new_key()
    cert = _sign_leaf(ca_dir, key.public_key(), common_name, role, days, sans)
    write_files({key_path: (key_pem(key), 0o600), cert_path: (cert_pem(cert), 0o644)}, force=force)
    return cert_path, key_path


def sign_csr(ca_dir: Path, csr_pem: bytes, *, days: int = LEAF_DAYS) -> bytes:
    """Sign a device CSR; return the certificate PEM.

    Only the CN and the public key are taken from the CSR: any extension it
    requests (CA, serverAuth, SANs) is ignored, so a box cannot ask for more
    than a device certificate.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise PkiError(f"not a PEM CSR: {e}") from e
    if not csr.is_signature_valid:
        raise PkiError("CSR signature is invalid: it was not made with the key it carries")
    public_key = csr.public_key()
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
        raise PkiError(f"RSA key of {public_key.key_size} bits is too small")
    if not isinstance(public_key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise PkiError(f"unsupported key type {type(public_key).__name__}")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        raise PkiError(f"CSR must carry exactly one CN, found {len(cns)}")
    device_id = check_name(str(cns[0].value), "device id")
    return cert_pem(_sign_leaf(ca_dir, public_key, device_id, "device", days, ()))


@dataclass(frozen=True)
class DeviceGrant:
    """Where a device lives: its site and the OTA groups it listens to."""

    site: str
    groups: tuple[str, ...] = field(default=())


def render_acl(
    devices: Mapping[str, DeviceGrant],
    subscribers: Iterable[str] = (),
    operators: Iterable[str] = (),
    auditors: Iterable[str] = (),
) -> str:
    """The mosquitto `acl_file` text: one explicit `user` block per identity.

    Why explicit blocks and not `pattern edge/v1/+/%u/#`: a pattern cannot
    bind the site (a device could speak as itself under any site), it applies
    to every identity including subscribers and operators, and it grants
    something to any certificate the CA ever signed. Explicit blocks bind
    device -> site exactly, give each group read to its members only, and
    fail closed: a certificate missing from the inventory connects but can
    neither publish nor read, which is also how a stolen box is cut off
    (remove it, re-render, `kill -HUP` mosquitto) until CRLs are in place.

    - device: write its own events/#, status, health, ota/status; read its own
      ota/# and each group's ota/#; read and write its own `doctor` topic, where
      `edge-agent doctor` proves by delivery that publishing works.
    - subscriber: read every device's events/#, status, health, ota/status.
    - operator: write every device's and group's ota/# (manifests are signed;
      the ACL only keeps devices from forging them), read ota/status.
    - auditor: read everything (`#`), for the egress check.
    """
    blocks: list[list[str]] = []
    seen: set[str] = set()

    def block(name: str, what: str, lines: list[str]) -> None:
        check_name(name, what)
        if name in seen:
            raise PkiError(f"identity {name!r} appears twice: one certificate, one role")
        seen.add(name)
        blocks.append([f"# {what}", f"user {name}", *lines])

    for device, grant in sorted(devices.items()):
        site = check_name(grant.site, "site")
        own = f"edge/v1/{site}/{device}"
        block(device, "device", [
            *(f"topic write {own}/{leaf}" for leaf in ("events/#", "status", "health", "ota/status")),
            f"topic read {own}/ota/#",
            f"topic readwrite {own}/doctor",
            *(f"topic read edge/v1/{site}/groups/{check_name(g, 'group')}/ota/#"
              for g in sorted(set(grant.groups))),
        ])
    for name in sorted(subscribers):
        block(name, "subscriber", [
            f"topic read edge/v1/+/+/{leaf}" for leaf in ("events/#", "status", "health", "ota/status")
        ])
    for name in sorted(operators):
        block(name, "operator", [
            "topic write edge/v1/+/+/ota/#",
            "topic write edge/v1/+/groups/+/ota/#",
            "topic read edge/v1/+/+/ota/status",
        ])
    for name in sorted(auditors):
        block(name, "auditor", ["topic read #"])
    header = (
        "# Generated by `edge-fleet pki acl`; edit the inventory, not this file.\n"
        "# Identity = client certificate CN (use_identity_as_username).\n"
        "# Anything not granted below is denied.\n"
    )
    return header + "".join("\n" + "\n".join(b) + "\n" for b in blocks)


def load_inventory(path: Path) -> dict:
    """Read an inventory YAML into `render_acl` keyword arguments.

    devices: {cam-01: {site: paris-01, groups: [lobby]}}
    subscribers: [central]   operators: [fleet-ops]   auditors: [egress-audit]
    """
    raw = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(raw) - {"devices", "subscribers", "operators", "auditors"}
    if unknown:
        raise PkiError(f"{path}: unknown keys {sorted(unknown)}")
    try:
        devices = {
            str(d): DeviceGrant(site=_name(g["site"], f"{path}: {d}.site"),
                                groups=tuple(_names(g.get("groups"), f"{path}: {d}.groups")))
            for d, g in (raw.get("devices") or {}).items()
        }
    except (KeyError, TypeError, AttributeError) as e:
        raise PkiError(f"{path}: each device needs a mapping with `site` (and optional `groups`)") from e
    return {
        "devices": devices,
        **{k: _names(raw.get(k), f"{path}: {k}") for k in ("subscribers", "operators", "auditors")},
    }


def _names(value: object, where: str) -> list[str]:
    """A YAML list of names. A single name is refused, not read letter by letter (`operators: ops` would grant
    o, p and s), and so is a value YAML reads as a number or a boolean (`yes`, `on`). Absent: none."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise PkiError(f"{where}: give a list of names, e.g. [{value if isinstance(value, str) else 'name'}]")
    return [_name(n, where) for n in value]


def _name(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise PkiError(f"{where}: {value!r} is not a name: quote a name YAML would read as a number or yes/no")
    return value


def add_pki_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `pki init-ca | issue | csr | sign-csr | acl` under `subparsers`.

    The handler is stored as the `pki_handler` default; `edge-fleet` (fleet/cli.py) runs it.
    """
    pki = subparsers.add_parser("pki", help="device CA, certificates and broker ACL")
    sub = pki.add_subparsers(dest="pki_command", required=True)

    p = sub.add_parser("init-ca", help="make the device CA")
    p.add_argument("ca_dir", type=Path)
    p.add_argument("--name", default="edge-agent device CA")
    p.add_argument("--days", type=int, default=CA_DAYS)
    p.set_defaults(pki_handler=lambda a: print(init_ca(a.ca_dir, a.name, days=a.days, force=a.force)))

    p = sub.add_parser("issue", help="make a key and certificate signed by the CA")
    p.add_argument("ca_dir", type=Path)
    p.add_argument("name", help="device id, subscriber/operator/auditor id, or server name")
    p.add_argument("--role", choices=ROLES, default="device")
    p.add_argument("--out", type=Path, default=Path("."), help="output directory")
    p.add_argument("--days", type=int, default=LEAF_DAYS)
    p.add_argument("--san", action="append", help="server SAN (repeat); default localhost, 127.0.0.1")
    p.set_defaults(pki_handler=_cmd_issue)

    p = sub.add_parser("csr", help="on the box: make a device key and a CSR to send to the CA")
    p.add_argument("device_id")
    p.add_argument("--out", type=Path, default=Path("."), help="output directory")
    p.set_defaults(pki_handler=_cmd_csr)

    p = sub.add_parser("sign-csr", help="at the CA: sign a device CSR")
    p.add_argument("ca_dir", type=Path)
    p.add_argument("csr", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="certificate file to write")
    p.add_argument("--days", type=int, default=LEAF_DAYS)
    p.set_defaults(pki_handler=_cmd_sign_csr)

    p = sub.add_parser("acl", help="render the mosquitto acl_file from an inventory YAML")
    p.add_argument("inventory", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(
        pki_handler=lambda a: write_files(
            {a.output: (render_acl(**load_inventory(a.inventory)).encode(), 0o644)}, force=a.force
        )
    )

    for p in sub.choices.values():
        p.add_argument("--force", action="store_true", help="overwrite existing files")
    return pki


def _cmd_issue(args: argparse.Namespace) -> None:
    sans = args.san or ("localhost", "127.0.0.1")
    cert, key = issue(
        args.ca_dir, args.name, args.out, args.role, days=args.days, sans=sans, force=args.force
    )
    print(cert)
    print(key)


def _cmd_csr(args: argparse.Namespace) -> None:
    key = new_key()
    csr = make_csr(key, args.device_id)
    key_path, csr_path = args.out / f"{args.device_id}.key", args.out / f"{args.device_id}.csr"
    write_files({key_path: (key_pem(key), 0o600), csr_path: (csr, 0o644)}, force=args.force)
    print(csr_path)


def _cmd_sign_csr(args: argparse.Namespace) -> None:
    cert = sign_csr(args.ca_dir, args.csr.read_bytes(), days=args.days)
    write_files({args.output: (cert, 0o644)}, force=args.force)
    print(args.output)
