"""`edge-fleet`: the operator's commands, run at the operator's desk, never on a box: `edge-fleet pki ...`
(device CA, certificates, broker ACL) and `edge-fleet ota ...` (signing keys, signed OTA manifests, rollouts)."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from pydantic import ValidationError

from agent.ota.errors import OtaError
from agent.ota.manifest import Manifest, SignedManifest
from agent.ota.report import DONE_STATES
from agent.ota.verifier import signed_bytes
from agent.settings.errors import describe_validation_error
from agent.settings.trust import TrustFileError, TrustStore
from engines.progress import Progress
from fleet.model_update import model_manifest
from fleet.pki import PkiError, add_pki_parser
from fleet.publish import (
    DeviceOutcome,
    FleetError,
    RolloutWatch,
    connect,
    keygen,
    publish,
    rollout_steps,
    sign,
)

# Bad input (an invalid manifest, an unusable key) exits 2, like a bad config; I/O failures exit 1.
EXIT_OK = 0
EXIT_IO_ERROR = 1
EXIT_BAD_INPUT = 2
# A rollout that did not complete: a device failed, or did not answer in time.
EXIT_ROLLOUT_FAILED = 3


def add_fleet_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `ota` and its subcommands to the `edge-fleet` subparsers.

    Each subcommand sets `func`, a handler taking the parsed args and
    returning the exit code. New fleet subcommands go on `commands` below.
    """
    fleet = subparsers.add_parser("ota", help="Fleet signing keys and signed OTA manifests: keygen, model-manifest, sign, publish, status.")
    commands = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")

    keygen_parser = commands.add_parser("keygen", help="Create an Ed25519 fleet signing key pair and its trust entry.")
    keygen_parser.add_argument("out_dir", type=Path, help="Directory for the key files (created 0700 if missing).")
    keygen_parser.set_defaults(func=run_keygen)

    sign_parser = commands.add_parser("sign", help="Validate a manifest (JSON or YAML) and sign it.")
    sign_parser.add_argument("manifest", type=Path, help="Manifest file (.json, or YAML otherwise).")
    sign_parser.add_argument("--key", type=Path, required=True, help="Fleet private key (PEM) from `edge-fleet ota keygen`.")
    sign_parser.add_argument("--out", type=Path, required=True, help="Where to write the signed manifest (JSON).")
    sign_parser.set_defaults(func=run_sign)

    model_parser = commands.add_parser(
        "model-manifest", help="Write a model update's manifest (unsigned, YAML) with its golden reference, for `sign`."
    )
    model_parser.add_argument("model", type=Path, help="The model's engine manifest (JSON), as in models/.")
    model_parser.add_argument("--models-dir", type=Path, required=True, help="Folder holding the model's file.")
    model_parser.add_argument("--url", required=True, help="Where devices download the model's file (http or https).")
    model_parser.add_argument(
        "--golden-dir", type=Path, required=True, help="The golden frames (PNG) the devices hold as ota.golden_dir."
    )
    model_parser.add_argument("--version", type=int, required=True, help="Above the last model update's version.")
    model_parser.add_argument("--device", action="append", default=[], help="Target device id (repeatable).")
    model_parser.add_argument("--group", action="append", default=[], help="Target group (repeatable).")
    model_parser.add_argument("--valid-days", type=float, default=7.0, help="Days until the manifest expires (7).")
    model_parser.add_argument("--min-agent-version", default="0.1.0", help="Oldest agent that may apply it (0.1.0).")
    model_parser.add_argument("--out", type=Path, required=True, help="Where to write the manifest (YAML).")
    model_parser.set_defaults(func=run_model_manifest)

    publish_parser = commands.add_parser(
        "publish", help="Publish a signed manifest (retained): canary devices first, then the other devices and groups."
    )
    publish_parser.add_argument("signed", type=Path, help="Signed manifest from `edge-fleet ota sign`.")
    _add_broker_args(publish_parser)
    publish_parser.add_argument("--canary", action="append", default=[], help="Canary device id (repeatable).")
    publish_parser.add_argument("--device", action="append", default=[], help="Device id to publish to (repeatable).")
    publish_parser.add_argument("--group", action="append", default=[], help="Group to publish to (repeatable).")
    publish_parser.add_argument(
        "--trust", type=Path, help="The devices' trust file: the signature is checked against it before publishing."
    )
    publish_parser.set_defaults(func=run_publish)

    status_parser = commands.add_parser("status", help="Watch devices' ota/status for one update until done or failed.")
    _add_broker_args(status_parser)
    status_parser.add_argument("--kind", required=True, choices=["model", "zones", "config"], help="Update kind.")
    status_parser.add_argument("--version", required=True, type=int, help="Update version.")
    status_parser.add_argument("--device", action="append", default=[], help="Device expected to commit (repeatable).")
    status_parser.set_defaults(func=run_status)
    return fleet


def _add_broker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", required=True, help="Site id (topic segment).")
    parser.add_argument("--host", default="127.0.0.1", help="MQTT broker host.")
    parser.add_argument("--port", type=int, default=1883, help="MQTT broker port (8883 with TLS).")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="How long to wait for devices, in seconds.")
    parser.add_argument("--ca-file", type=Path, help="CA certificate of the broker (enables TLS with the two below).")
    parser.add_argument("--cert-file", type=Path, help="Operator client certificate.")
    parser.add_argument("--key-file", type=Path, help="Operator client key.")


def _tls(args: argparse.Namespace) -> dict[str, Path] | None:
    """The three TLS files, or None for plain TCP; FleetError for some of them only (never a silent fallback)."""
    files = {"ca_file": args.ca_file, "cert_file": args.cert_file, "key_file": args.key_file}
    if any(files.values()) and not all(files.values()):
        missing = [f"--{name.replace('_', '-')}" for name, path in files.items() if path is None]
        raise FleetError(
            f"TLS needs --ca-file, --cert-file and --key-file together; {', '.join(missing)} missing "
            "(give none of them for plain TCP, on the loopback or a trusted network only)"
        )
    return files if all(files.values()) else None


def _recipients_outside_target(manifest: Manifest, args: argparse.Namespace) -> list[str]:
    """The --canary/--device/--group the manifest's target certainly leaves out (a device may also match by a
    group it is in, which the publisher does not know: only a target without groups, or without device ids,
    tells)."""
    target = manifest.target
    outside = []
    if not target.groups:
        outside += [d for d in [*args.canary, *args.device] if d not in target.device_ids]
    if not target.device_ids:
        outside += [f"group {g}" for g in args.group if g not in target.groups]
    return outside


def _untrusted(envelope: bytes, trust_file: Path) -> str | None:
    """Why a device trusting `trust_file` would refuse the envelope's signatures, or None if it would not."""
    try:
        signed_bytes(envelope, TrustStore.from_file(trust_file))
    except TrustFileError as exc:
        return f"cannot check the signature: {exc}"
    except OtaError as exc:
        return (
            f"{exc}; every device with the trust file {trust_file} would refuse it "
            "(a copy edited after signing, or signed with another key): sign it again with a key in that file"
        )
    return None


def _connect(args: argparse.Namespace, command: str) -> mqtt.Client | int:
    """The broker connection the arguments ask for, or the exit code after saying why there is none."""
    try:
        tls = _tls(args)
    except FleetError as exc:
        print(f"edge-fleet ota {command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return connect(args.host, args.port, tls)
    except FleetError as exc:
        print(f"edge-fleet ota {command}: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR


def format_table(outcomes: dict[str, DeviceOutcome], expected: list[str]) -> str:
    """One line per device: id, state, error code and message; expected devices without news are `pending`."""
    rows = [outcomes.get(d, DeviceOutcome(d, "pending")) for d in dict.fromkeys([*expected, *sorted(outcomes)])]
    width = max([len("device"), *(len(r.device_id) for r in rows)])
    lines = [f"{'device':<{width}}  {'state':<15}  error"]
    lines += [f"{r.device_id:<{width}}  {r.state:<15}  {r.error_code} {r.error_message}".rstrip() for r in rows]
    return "\n".join(lines)


def _all_done(outcomes: dict[str, DeviceOutcome], expected: list[str]) -> bool:
    return all(outcomes.get(d, DeviceOutcome(d, "pending")).state in DONE_STATES for d in expected)


def run_publish(args: argparse.Namespace) -> int:
    """Handler of `edge-fleet ota publish SIGNED --site S [--canary D]... [--device D]... [--group G]...`."""
    try:
        envelope = args.signed.read_bytes()
        manifest = Manifest.model_validate_json(SignedManifest.model_validate_json(envelope).manifest)
    except OSError as exc:
        print(f"edge-fleet ota publish: {args.signed}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as exc:
        print(
            f"edge-fleet ota publish: {args.signed}: not a signed manifest ({describe_validation_error(exc)}): a copy "
            "cut short, edited, or not the output of `edge-fleet ota sign`; sign the manifest again",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if args.trust is not None and (refusal := _untrusted(envelope, args.trust)):
        print(f"edge-fleet ota publish: {args.signed}: {refusal}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not (args.canary or args.device or args.group):
        print("fleet publish: give at least one --canary, --device or --group", file=sys.stderr)
        return EXIT_BAD_INPUT
    if outside := _recipients_outside_target(manifest, args):
        print(
            f"edge-fleet ota publish: {args.signed} targets {manifest.target.model_dump()}, not {', '.join(outside)}: "
            "those devices would ignore it; publish to the devices it targets, or sign it for these",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    client = _connect(args, "publish")
    if isinstance(client, int):
        return client
    steps = rollout_steps(args.canary, args.device, args.group)
    try:
        with Progress(steps, "rollout (canaries committed, then devices and groups published)") as bar:
            outcomes = publish(
                client, envelope, args.site, canaries=args.canary, device_ids=args.device, groups=args.group,
                timeout_s=args.timeout_s, on_step=bar.update,
            )
    except FleetError as exc:
        print(f"edge-fleet ota publish: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    finally:
        client.disconnect()
        client.loop_stop()
    if args.canary:
        print(format_table(outcomes, args.canary))
    if not _all_done(outcomes, args.canary):
        print("fleet publish: canary did not commit; the rest were not published", file=sys.stderr)
        return EXIT_ROLLOUT_FAILED
    committed = f"committed on {len(args.canary)} canaries; " if args.canary else ""
    print(f"{committed}published to {len(args.device)} more devices and {len(args.group)} groups")
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    """Handler of `edge-fleet ota status --site S --kind K --version V [--device D]...`: prints a table at the end."""
    client = _connect(args, "status")
    if isinstance(client, int):
        return client
    try:
        watch = RolloutWatch(client, args.site, args.kind, args.version)
        outcomes = watch.wait(args.device, args.timeout_s)
    except FleetError as exc:
        print(f"edge-fleet ota status: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    finally:
        client.disconnect()
        client.loop_stop()
    print(format_table(outcomes, args.device))
    expected = args.device or sorted(outcomes)
    return EXIT_OK if expected and _all_done(outcomes, expected) else EXIT_ROLLOUT_FAILED


def run_keygen(args: argparse.Namespace) -> int:
    """Handler of `edge-fleet ota keygen DIR`: prints the key id and the files written."""
    try:
        key = keygen(args.out_dir)
    except OSError as exc:
        print(f"edge-fleet ota keygen: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    print(f"key_id {key.key_id}")
    print(f"private key (keep secret) {key.private_key_path}")
    print(f"public key {key.public_key_path}")
    print(f"trust entry for devices {key.trust_entry_path}")
    return EXIT_OK


def run_model_manifest(args: argparse.Namespace) -> int:
    """Handler of `edge-fleet ota model-manifest MODEL_JSON --models-dir D --url U --golden-dir G --version N --out F`."""
    try:
        document = model_manifest(
            args.model, args.models_dir, args.url, args.golden_dir, version=args.version, device_ids=args.device,
            groups=args.group, valid_days=args.valid_days, min_agent_version=args.min_agent_version,
        )  # fmt: skip
    except FleetError as exc:
        print(f"edge-fleet ota model-manifest: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        args.out.write_text(yaml.safe_dump(document, sort_keys=False))
    except OSError as exc:
        print(f"edge-fleet ota model-manifest: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    golden = document["payload"]["golden"]["frames"]
    boxes = sum(len(f["boxes"]) for f in golden)
    print(f"model {document['payload']['model']['name']} version {args.version}: {boxes} reference detections on "
          f"{len(golden)} golden frames -> {args.out}; next: edge-fleet ota sign {args.out} --key ... --out ...")  # fmt: skip
    return EXIT_OK


def run_sign(args: argparse.Namespace) -> int:
    """Handler of `edge-fleet ota sign MANIFEST --key K --out F`: prints what was signed."""
    try:
        envelope = sign(args.manifest, args.key)
        args.out.write_bytes(envelope)
    except FleetError as exc:
        print(f"edge-fleet ota sign: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"edge-fleet ota sign: {exc}", file=sys.stderr)
        return EXIT_IO_ERROR
    signed = SignedManifest.model_validate_json(envelope)
    manifest = Manifest.model_validate_json(signed.manifest)
    digest = hashlib.sha256(signed.manifest.encode("utf-8")).hexdigest()
    print(
        f"signed {manifest.kind} version {manifest.version} (manifest sha256 {digest}) "
        f"with key {signed.signatures[0].key_id} -> {args.out}"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`edge-fleet`: 0 on success, 2 on bad input or a refused PKI operation (see the EXIT_ codes)."""
    parser = argparse.ArgumentParser(prog="edge-fleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_pki_parser(sub)
    add_fleet_parser(sub)
    args = parser.parse_args(argv)
    if hasattr(args, "func"):
        return args.func(args)
    try:
        args.pki_handler(args)
    except PkiError as e:
        parser.exit(EXIT_BAD_INPUT, f"edge-fleet pki: error: {e}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
