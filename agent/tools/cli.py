"""`edge-agent` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

import structlog

from agent import __version__
from agent.io.audit import add_audit_parser
from agent.tools.args import add_config_argument, resolve_config
from agent.tools.doctor import add_doctor_parser
from agent.tools.provision import add_provision_parser
from agent.tools.selftest import add_selftest_parser
from agent.tools.status import add_status_parser
from calibration.cli import add_calibrate_parser

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
# `run` ended by an error (logged as `agent_crashed` with its traceback); the broker learnt of it:
EXIT_CRASH_ANNOUNCED = 70  # from the retained status `offline`, reason `crashed`
EXIT_CRASH_WILL = 71  # from the last will (`offline`, reason `lost`), or it never saw the agent online


def _load(path: Path) -> tuple | None:
    """(config, zones), or None after printing the first error with its field path."""
    from agent.settings.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return None


def _cmd_check_config(args: argparse.Namespace) -> int:
    from agent.analytics.kinds import ZONE_KINDS

    if (loaded := _load(args.config)) is None:
        return EXIT_CONFIG
    config, zones = loaded
    print(f"{args.config}: ok ({len(config.cameras)} cameras, {len(zones.zones)} zones, {len(zones.lines)} lines)")
    where = config.zones_file or "no zones_file"
    if not zones.zones and not zones.lines:
        print(f"warning: {where}: no zones or lines, so no rule runs on any camera", file=sys.stderr)
    if ruleless := zones.ruleless_zones():
        kinds = ", ".join(f"{k.field}:" for k in ZONE_KINDS)
        print(f"warning: {where}: zones {ruleless} turn on no rule, so they watch nothing: give each a rule block "
              f"({kinds})", file=sys.stderr)  # fmt: skip
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from agent.io import logs
    from agent.settings.config import ConfigError

    if (loaded := _load(args.config)) is None:
        return EXIT_CONFIG
    config, zones = loaded
    from agent.io.native_log import route_native_stderr

    route_native_stderr()  # FFmpeg's, OpenCV's and ONNX Runtime's own lines become log records
    logs.configure(config.log_level)
    from agent.io.state_lock import StateDirUnavailable
    from agent.runtime.app import Agent
    from engines.manifest import ModelError

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent = Agent(config, zones, args.config)
    try:
        agent.run(stop, args.duration)
    except ConfigError as e:  # an unreadable OTA state: never guess what to serve
        print(f"config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except ModelError as e:  # the model cannot run as configured (e.g. a camera's input size its graph cannot take)
        print(f"model error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except StateDirUnavailable as e:
        structlog.get_logger("agent").error("state_dir_unavailable", error=str(e))
        return EXIT_FAILURE
    except Exception:
        structlog.get_logger("agent").exception("agent_crashed", announced=agent.crash_announced)
        return EXIT_CRASH_ANNOUNCED if agent.crash_announced else EXIT_CRASH_WILL
    # produced this run, acknowledged by the broker, and left in the outbox for the next start
    print(json.dumps(agent.final), file=sys.stderr)
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from agent.tools.schema import write_schemas

    for path in write_schemas(args.out):
        print(path)
    return EXIT_OK


def _cmd_models_fetch(args: argparse.Namespace) -> int:
    from engines.fetch import fetch_model
    from engines.manifest import ModelError

    try:
        path = fetch_model(args.manifest, args.dest, args.search, url_allowed=not args.offline, progress=True)
    except ModelError as e:
        print(f"model error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(path)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the agent")
    add_config_argument(p)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check-config", help="validate a config and its zones; exit 2 on the first error")
    add_config_argument(p)
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("schema", help="write the JSON Schema of every message the agent publishes")
    p.add_argument("--out", type=Path, default=Path("schema"), help="output folder")
    p.set_defaults(func=_cmd_schema)

    models = sub.add_parser("models", help="model files").add_subparsers(dest="models_command", required=True)
    p = models.add_parser("fetch", help="put a manifest's model file in a folder, checked by SHA-256")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--dest", type=Path, required=True, help="models folder to fill")
    p.add_argument("--search", type=Path, action="append", default=[], help="folder that may already hold the file")
    p.add_argument("--offline", action="store_true", help="never download from the manifest's URL")
    p.set_defaults(func=_cmd_models_fetch)

    add_audit_parser(sub)
    add_provision_parser(sub)
    add_doctor_parser(sub)
    add_selftest_parser(sub)
    add_status_parser(sub)
    add_calibrate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_config(parser, args)
    for attribute in ("func", "handler"):
        if hasattr(args, attribute):
            return getattr(args, attribute)(args)
    raise AssertionError(f"no handler for {args}")


if __name__ == "__main__":
    sys.exit(main())
