"""The one CLI convention for the agent's config: `--config FILE`, with the positional
form (`edge-agent check-config FILE`) kept as an alias."""

from __future__ import annotations

import argparse
from pathlib import Path

# where an installed box keeps its config, and the service's user (deploy/install.sh)
DEFAULT_CONFIG = Path("/etc/edge-agent/config.yaml")
SERVICE_USER = "edge-agent"


def add_config_argument(parser: argparse.ArgumentParser, default: Path | None = None, help: str = "") -> None:
    """`--config FILE` and its positional alias; `resolve_config` merges them after parsing."""
    where = f" (default {default})" if default else ""
    parser.add_argument("--config", type=Path, default=None, help=(help or "the agent's config YAML") + where)
    parser.add_argument("config_alias", nargs="?", type=Path, metavar="CONFIG", help="the same as --config")
    parser.set_defaults(config_default=default)


def resolve_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set `args.config` from --config, the positional alias or the default; a usage error
    (exit 2) when they disagree or none is given."""
    if not hasattr(args, "config_alias"):
        return
    given = {p for p in (args.config, args.config_alias) if p is not None}
    if len(given) > 1:
        parser.error(f"two configs given ({args.config} and {args.config_alias}): give one, with --config")
    args.config = given.pop() if given else args.config_default
    if args.config is None:
        parser.error(f"{args.command}: give the agent's config with --config FILE (e.g. examples/vtest.yaml)")
