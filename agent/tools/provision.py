"""`edge-agent provision`: give a fresh box its identity and a first config.

It makes the device key (0600, never leaves the box) and a CSR whose CN is
the device id, for the device CA to sign (`edge-fleet pki sign-csr`); with
`--ca-dir` (a technician laptop holding the CA) it signs on the spot. It
probes each camera with OpenCV and writes the config (0640) and an empty
zones file, the probes recorded as comments above each camera.

The config is validated the way `load_config` validates it before anything
is written, and every file goes through a temporary file and a rename: a
box never holds half a config. Existing files are refused without
`--force`, all checked before the first write, because a re-run that
silently replaced the key would lock the box out of the broker.

Until the CA's certificate arrives, the config names the certificate it
will find at `{identity_dir}/{device_id}.crt`; validation checks the rest
(that file is the only one allowed to be missing), and `edge-agent
check-config` and `doctor` fail on it until it is there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pwd
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import ValidationError

from agent.settings import paths
from agent.settings.camera import CameraConfig
from agent.settings.config import (
    AgentConfig,
    ConfigError,
    check_zones,
    format_validation_error,
)
from agent.settings.zones import ZonesDoc
from agent.tools import identity
from agent.tools.args import SERVICE_USER
from agent.tools.doctor import CameraProbe, probe_camera
from engines.manifest import ModelError, load_manifest, resolve_model_file

EXIT_OK, EXIT_REFUSED = 0, 2
PROBE_S = 1.0


def add_provision_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `provision`; the handler is the `func` default."""
    p = subparsers.add_parser("provision", help="create this box's identity (key + CSR) and its config")
    p.add_argument("--config", type=Path, default=Path("/etc/edge-agent/config.yaml"), help="config file to write")
    p.add_argument("--identity-dir", type=Path, help="key, CSR and certificate folder (default: <config dir>/pki)")
    p.add_argument("--non-interactive", action="store_true", help="take everything from flags, ask nothing")
    p.add_argument("--device-id")
    p.add_argument("--site")
    p.add_argument("--group", dest="groups", action="append", default=[], help="OTA group (repeat)")
    p.add_argument("--broker-host")
    p.add_argument("--broker-port", type=int, default=8883)
    p.add_argument("--ca-file", type=Path, help="CA certificate that signed the broker's certificate")
    p.add_argument("--ca-dir", type=Path, help="device CA folder: sign the CSR here and now")
    p.add_argument("--manifest", type=Path, help="model manifest (JSON)")
    p.add_argument("--models-dir", type=Path, default=Path("/var/lib/edge-agent/models"))
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/edge-agent"))
    p.add_argument("--camera", dest="cameras", action="append", default=[], metavar="ID=URL", help="camera (repeat)")
    p.add_argument("--probe-seconds", type=float, default=PROBE_S, help="how long to measure each camera's rate")
    p.add_argument("--force", action="store_true", help="replace an existing identity and config")
    p.add_argument("--owner", help="run as root: the service's user, who must read the config and own its key and "
                   f"zones file (default {SERVICE_USER}, where that user exists)")  # fmt: skip
    p.set_defaults(func=cmd_provision)
    return p


def ask_missing(args: argparse.Namespace, ask: Callable[[str], str]) -> None:
    """Fill what the flags did not give with questions (a flag's value is the default)."""

    def question(label: str, current: object) -> str:
        answer = ask(f"{label}{f' [{current}]' if current not in (None, '') else ''}: ").strip()
        return answer or ("" if current is None else str(current))

    args.device_id = question("device id", args.device_id)
    args.site = question("site", args.site)
    args.groups = [
        g.strip() for g in question("groups (comma-separated)", ",".join(args.groups)).split(",") if g.strip()
    ]
    args.broker_host = question("broker host", args.broker_host)
    args.broker_port = int(question("broker port", args.broker_port))
    args.ca_file = _path(question("broker CA certificate file", args.ca_file))
    args.manifest = _path(question("model manifest", args.manifest))
    while entry := ask("camera as ID=URL (empty line to finish): ").strip():
        args.cameras.append(entry)


def _path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None


def _parse_cameras(entries: list[str]) -> list[CameraConfig]:
    cameras = []
    for entry in entries:
        camera_id, sep, url = entry.partition("=")
        if not sep or not camera_id.strip() or not url.strip():
            raise ConfigError(f"--camera {entry!r}: expected ID=URL")
        try:
            cameras.append(CameraConfig(id=camera_id.strip(), url=url.strip()))
        except ValidationError as e:
            raise ConfigError(f"camera {camera_id.strip()}: {format_validation_error(e)}") from e
    return cameras


def _render(raw: dict, probes: dict[str, CameraProbe], redacted: dict[str, str]) -> str:
    """The config YAML with a header and each camera's probe as a comment above it."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = {k: v for k, v in raw.items() if k != "cameras"}
    lines = [f"# Written by `edge-agent provision` at {now}. Camera probes are comments above each camera.", ""]
    lines += yaml.safe_dump(head, sort_keys=False).splitlines()
    lines.append("cameras:")
    for camera in raw["cameras"]:
        probe = probes[camera["id"]]
        state = "reachable" if probe.opened else "NOT REACHABLE"
        lines.append(f"  # probe {now}: {redacted[camera['id']]}: {state}, {probe.describe()}")
        block = yaml.safe_dump([camera], sort_keys=False).splitlines()
        lines += [f"  {line}" for line in block]
    return "\n".join(lines) + "\n"


def _validate(raw: dict, zones_raw: dict, base_dir: Path, ca_file: Path) -> None:
    """What load_config checks, on the data about to be written; ConfigError names the problem.

    The device key and certificate do not exist yet (this command writes the
    key; the CA may still owe the certificate) and load time only checks that
    they exist, so the CA file, which must exist, stands in for both.
    """
    stand_in = {"cert_file": str(ca_file), "key_file": str(ca_file)}
    checked = {**raw, "broker": {**raw["broker"], "tls": {**raw["broker"]["tls"], **stand_in}}}
    try:
        with paths.relative_to(base_dir):
            config = AgentConfig(**checked)
        zones = ZonesDoc.model_validate(zones_raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from e
    try:
        manifest = load_manifest(config.model.manifest)
        resolve_model_file(manifest, config.models_dir)
    except ModelError as e:
        raise ConfigError(f"model: {e} (fetch it first: edge-agent models fetch)") from e
    check_zones(config, zones, manifest.classes, manifest.class_map, where="zones")


def provision(args: argparse.Namespace, out: Callable[[str], None] = print) -> list[Path]:
    """Probe, validate, then write key, CSR (and certificate), zones and config; return the paths written.

    Raises ConfigError on bad input and identity.PkiError on a refused overwrite,
    in both cases before any file is written.
    """
    config_path = args.config.resolve()
    owner = _service_user(args.owner)
    identity_dir = (args.identity_dir or config_path.parent / "pki").resolve()
    device_id = identity.check_name(args.device_id or "", "device id")
    key_path, csr_path, cert_path = (identity_dir / f"{device_id}.{ext}" for ext in ("key", "csr", "crt"))
    # rewritten by the agent (zone-editor saves, OTA zones updates): beside its state, which it may write
    zones_path = args.state_dir.resolve() / "zones.yaml"
    targets = [key_path, csr_path, zones_path, config_path] + ([cert_path] if args.ca_dir else [])
    if not args.force:
        existing = [str(p) for p in targets if p.exists()]
        if existing:
            raise identity.PkiError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    if not args.ca_file:
        raise ConfigError("--ca-file is required: the CA certificate that signed the broker's certificate")
    if cert_path.exists() and not args.ca_dir:
        out(f"warning: {cert_path} belongs to the old key: replace it with the CA's answer to the new CSR")
    cameras = _parse_cameras(args.cameras)
    probes: dict[str, CameraProbe] = {}
    for camera in cameras:
        out(f"probing {camera.id} ({camera.redacted_url}) ...")
        probes[camera.id] = probe_camera(camera, args.probe_seconds)
        out(f"  {'ok' if probes[camera.id].opened else 'NOT REACHABLE'}: {probes[camera.id].describe()}")
    raw = {
        "device_id": device_id,
        "site": args.site,
        "groups": args.groups,
        "models_dir": str(args.models_dir.resolve()),
        "state_dir": str(args.state_dir.resolve()),
        "zones_file": str(zones_path),
        "model": {"manifest": str(args.manifest.resolve()) if args.manifest else None},
        "cameras": [{"id": c.id, "url": c.url, **_probed_codec(probes[c.id])} for c in cameras],
        "broker": {
            "host": args.broker_host,
            "port": args.broker_port,
            "tls": {"ca_file": str(args.ca_file.resolve()), "cert_file": str(cert_path), "key_file": str(key_path)},
        },
    }
    zones_raw = {"version": 1, "zones": [], "lines": []}
    key = identity.new_key()
    csr = identity.make_csr(key, device_id)
    files: dict[Path, tuple[bytes, int]] = {key_path: (identity.key_pem(key), 0o600), csr_path: (csr, 0o644)}
    if args.ca_dir:
        from fleet.pki import sign_csr  # bench provisioning with the device CA at hand: the operator's package

        files[cert_path] = (sign_csr(args.ca_dir, csr), 0o644)
    _validate(raw, zones_raw, config_path.parent, args.ca_file)
    files[zones_path] = (yaml.safe_dump(zones_raw, sort_keys=False).encode(), 0o640)
    files[config_path] = (_render(raw, probes, {c.id: c.redacted_url for c in cameras}).encode(), 0o640)
    if owner is not None:  # folders made here must let the service reach what is handed to it below
        for folder, uid in ((identity_dir, 0), (config_path.parent, 0), (zones_path.parent, owner.pw_uid)):
            if not folder.exists():
                folder.mkdir(mode=0o750, parents=True)
                os.chown(folder, uid, owner.pw_gid)
    identity.write_files(files, force=args.force)
    if owner is not None:  # root wrote them: the service reads the config through its group, owns what it keeps
        for path in files:
            os.chown(path, owner.pw_uid if path in (key_path, zones_path) else 0, owner.pw_gid)
    return list(files)


def _probed_codec(probe: CameraProbe) -> dict[str, str]:
    """An RTSP camera's codec as its probe found it, for a Jetson's hardware decoder (built for one codec)."""
    return {} if probe.codec is None else {"codec": probe.codec}


def _service_user(name: str | None) -> pwd.struct_passwd | None:
    """The user the files are handed to: only when running as root (else the files are the runner's own)."""
    if os.geteuid() != 0:
        if name is not None:
            raise ConfigError(f"--owner {name} needs root: run provision with sudo to hand the files over")
        return None
    try:
        return pwd.getpwnam(name or SERVICE_USER)
    except KeyError:
        if name is None:
            return None  # a bench without the service's user: the files stay root's
        raise ConfigError(f"--owner {name}: no such user (the service's user: {SERVICE_USER} once deploy/install.sh ran)") from None


def cmd_provision(args: argparse.Namespace) -> int:
    """Ask (on a TTY, unless --non-interactive), provision, print the next steps; 0 or 2."""
    if not args.non_interactive and not sys.stdin.isatty():
        print("provision: stdin is not a terminal: use --non-interactive with flags", file=sys.stderr)
        return EXIT_REFUSED
    try:
        if not args.non_interactive:
            ask_missing(args, input)
        written = provision(args)
    except (ConfigError, identity.PkiError, ValueError) as e:
        print(f"provision: {e}", file=sys.stderr)
        return EXIT_REFUSED
    for path in written:
        print(f"wrote {path}")
    csr = next(p for p in written if p.suffix == ".csr")
    if not any(p.suffix == ".crt" for p in written):
        print(
            f"next: have the device CA sign {csr} (edge-fleet pki sign-csr CA_DIR {csr} -o {csr.with_suffix('.crt')})"
        )
    print(f"then: edge-agent doctor --config {args.config}")
    return EXIT_OK
