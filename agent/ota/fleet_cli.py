"""`edge-agent fleet ...`: the operator's commands. The main CLI wires them with `add_fleet_parser`."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from agent.ota.fleet import FleetError, keygen, sign
from agent.ota.manifest import Manifest, SignedManifest

# Bad input (an invalid manifest, an unusable key) exits 2, like a bad config; I/O failures exit 1.
EXIT_OK = 0
EXIT_IO_ERROR = 1
EXIT_BAD_INPUT = 2


def add_fleet_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `fleet` and its subcommands to the main CLI's subparsers.

    Each subcommand sets `func`, a handler taking the parsed args and
    returning the exit code. New fleet subcommands go on `commands` below.
    """
    fleet = subparsers.add_parser("fleet", help="Fleet operator tools: signing keys and signed OTA manifests.")
    commands = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")

    keygen_parser = commands.add_parser("keygen", help="Create an Ed25519 fleet signing key pair and its trust entry.")
    keygen_parser.add_argument("out_dir", type=Path, help="Directory for the key files (created 0700 if missing).")
    keygen_parser.set_defaults(func=run_keygen)

    sign_parser = commands.add_parser("sign", help="Validate a manifest (JSON or YAML) and sign it.")
    sign_parser.add_argument("manifest", type=Path, help="Manifest file (.json, or YAML otherwise).")
    sign_parser.add_argument("--key", type=Path, required=True, help="Fleet private key (PEM) from `fleet keygen`.")
    sign_parser.add_argument("--out", type=Path, required=True, help="Where to write the signed manifest (JSON).")
    sign_parser.set_defaults(func=run_sign)
    return fleet


def run_keygen(args: argparse.Namespace) -> int:
    """Handler of `fleet keygen DIR`: prints the key id and the files written."""
    try:
        key = keygen(args.out_dir)
    except OSError as exc:
        print(f"fleet keygen: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    print(f"key_id {key.key_id}")
    print(f"private key (keep secret) {key.private_key_path}")
    print(f"public key {key.public_key_path}")
    print(f"trust entry for devices {key.trust_entry_path}")
    return EXIT_OK


def run_sign(args: argparse.Namespace) -> int:
    """Handler of `fleet sign MANIFEST --key K --out F`: prints what was signed."""
    try:
        envelope = sign(args.manifest, args.key)
        args.out.write_bytes(envelope)
    except FleetError as exc:
        print(f"fleet sign: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"fleet sign: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    signed = SignedManifest.model_validate_json(envelope)
    manifest = Manifest.model_validate_json(signed.manifest)
    digest = hashlib.sha256(signed.manifest.encode("utf-8")).hexdigest()
    print(
        f"signed {manifest.kind} version {manifest.version} (manifest sha256 {digest}) "
        f"with key {signed.signatures[0].key_id} -> {args.out}"
    )
    return EXIT_OK
