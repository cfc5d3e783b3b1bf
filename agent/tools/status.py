"""`edge-agent status`: the running agent's figures for a technician on the box, read from
its local status socket (state_dir/status.sock) and refreshed in the terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from agent.io.status_socket import SOCKET_NAME, StatusUnavailable, read_status
from agent.io.zone_editor import ZONE_EDITOR_TOKEN_FILE
from agent.tools.args import DEFAULT_CONFIG, add_config_argument

_CLEAR = "\033[H\033[J"


def render(s: dict[str, Any]) -> str:
    """The figures as a table for a terminal."""
    broker, outbox, model = s["broker"], s["outbox"], s["model"]
    link = "connected" if broker["connected"] else f"UNREACHABLE ({broker['last_error'] or 'no answer yet'})"
    ota = s.get("ota")
    editor = s.get("zone_editor")
    lines = [
        f"edge-agent {s['agent_version']}  device {s['device_id']}  boot {s['boot_id']}  up {_duration(s['uptime_s'])}",
        f"config   {s['config'] or '-'}",
        f"broker   {broker['address']}{' (TLS)' if broker['tls'] else ''}  {link}  reconnects {broker['reconnects']}",
        f"model    {model['name']}  {model['backend']} {model['precision']}  sha256 {model['sha256'][:16]}",
        f"zones    version {s['zones_version']}",
        f"frames   {s['frames']}  events {s['events']}  detect errors {s['errors']}",
        f"outbox   {outbox['depth']} queued, oldest {outbox['oldest_age_s']} s  delivered {outbox['delivered']}"
        f"  dropped {outbox['dropped']}",
        "ota      " + (_ota(ota) if ota else "no update since start"),
    ]
    if editor and editor.get("unavailable"):
        lines.append(f"editor   NOT SERVING: {editor['unavailable']} (see zone_editor_port_unavailable in the log)")
    elif editor:
        page = editor.get("page_url") or f"{editor['url']}  ({editor['token_hint']})"
        lines.append(f"editor   {page}")
    lines += ["", _table(
        ["CAMERA", "STATE", "FPS", "FRAMES", "DROPPED", "RECONNECTS"],
        [[cid, c["state"], f"{c['fps']:.1f}", c["frames"], c["dropped"], c["reconnects"]] for cid, c in s["cameras"].items()],
    )]  # fmt: skip
    rules = [[r["camera"], r["kind"], r["area"] or "-", r["events"]] for r in s["rules"]]
    lines += ["", _table(["CAMERA", "RULE", "ZONE/LINE", "EVENTS"], rules) if rules else "no events yet"]
    return "\n".join(lines)


def _ota(ota: dict[str, Any]) -> str:
    what = f"{ota.get('kind') or '?'} v{ota.get('version') if ota.get('version') is not None else '?'}"
    error = ota.get("error")
    return f"{what} {ota['state']}" + (f" ({error['code']}: {error['message']})" if error else "")


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def with_editor_page(figures: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    """The zone editor's page URL with this boot's token, read from the agent's token file
    (mode 0600: never sent through the socket, which the state folder's group may read)."""
    editor = figures.get("zone_editor")
    if not editor or "url" not in editor:
        return figures
    token_file = state_dir / ZONE_EDITOR_TOKEN_FILE
    try:
        editor["page_url"] = json.loads(token_file.read_text(encoding="utf-8"))["url"]
    except PermissionError:
        editor["token_hint"] = f"{token_file} is readable by the agent's user only: run status with sudo"
    except (OSError, ValueError, KeyError):
        editor["token_hint"] = f"{token_file} is missing or unreadable; the log's zone_editor_started has the URL"
    return figures


def socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return args.socket
    from agent.settings.config import ConfigError, load_config

    try:
        config, _ = load_config(args.config)
    except ConfigError as e:
        raise StatusUnavailable(
            f"config error: {e}\n(status reads the socket in the config's state_dir; or give it with --socket)"
        ) from None
    return config.state_dir / SOCKET_NAME


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        path = socket_path(args)
        while True:
            figures = with_editor_page(read_status(path), path.parent)
            if args.json:
                print(json.dumps(figures), flush=True)
            else:
                print(("" if args.once or not sys.stdout.isatty() else _CLEAR) + render(figures), flush=True)
            if args.once:
                return 0
            time.sleep(args.interval)
    except StatusUnavailable as e:
        print(f"status: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def add_status_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="the running agent's cameras, rules, outbox, broker and model, refreshed")
    add_config_argument(p, DEFAULT_CONFIG)
    p.add_argument("--socket", type=Path, default=None, help=f"the status socket (default: state_dir/{SOCKET_NAME})")
    p.add_argument("--once", action="store_true", help="print once and exit")
    p.add_argument("--json", action="store_true", help="JSON, one document per refresh")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.set_defaults(func=_cmd_status)
