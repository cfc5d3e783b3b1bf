"""The zone editor: a small web page on 127.0.0.1 where a technician draws zones and lines
on a camera's current frame and saves a new zones version, applied live.

Off by default; the agent starts it when `zone_editor.enabled` is set. It
listens on loopback only (any other address is refused), so the frame never
leaves the box: technicians reach it through an SSH tunnel
(`ssh -L 8765:127.0.0.1:8765 box`). Loopback is not trust (every local process
and everyone on the tunnel reach it), so:
- every request needs the per-boot token: the page's URL carries it once
  (`/?token=...`, printed in the log as `zone_editor_started` and written to
  `state_dir/zone_editor.json`, mode 0600, for `edge-agent status`), then the
  page sends it in the `X-Zone-Editor-Token` header, which a cross-site page
  can only set after a CORS preflight this server never grants;
- Host (and Origin) must be loopback names, so a DNS-rebinding page cannot talk to it;
- bodies are capped at `MAX_BODY_BYTES` and `MAX_JSON_DEPTH` levels of nesting,
  at most `MAX_CONNECTIONS` connections are served at once (more are closed at
  once), and a connection idle for `IDLE_TIMEOUT_S` is closed;
- every response is `no-store` with a strict Content-Security-Policy.

Saves are whole documents (`zones` and `lines`, both always sent) based on the
version the page loaded: a save based on an older version is refused (409),
never merged. They are validated with the config's own `ZonesDoc` schema here
(whose vertex and shape caps bound the work), then by `save_zones` (the agent's
callback: `check_zones` against the cameras and the model's classes, raising
ValueError or ConfigError; OSError when the zones file cannot be written).
Every use is audited through `audit(action, **details)`; a save whose audit
record cannot be written (the callback returns False: a full disk) is refused.
"""

from __future__ import annotations

import errno
import hmac
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np
import structlog
from pydantic import ValidationError

from agent.io.state_lock import FULL_DISK_ERRNOS, WRITABLE_FOLDER_ADVICE
from agent.settings.config import ConfigError
from agent.settings.zones import Zone, ZonesDoc
from engines.atomic import write_atomic

__all__ = [
    "IDLE_TIMEOUT_S", "MAX_BODY_BYTES", "MAX_CONNECTIONS", "MAX_JSON_DEPTH", "TOKEN_HEADER", "ZONE_EDITOR_TOKEN_FILE",
    "ZoneEditor",
]  # fmt: skip

log = structlog.get_logger(__name__)

LOOPBACK_BINDS = ("127.0.0.1", "::1")
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
MAX_BODY_BYTES = 256 * 1024
MAX_JSON_DEPTH = 16  # a zones document needs 6 (doc, zones, zone, settings, polygon, point)
MAX_CONNECTIONS = 16
IDLE_TIMEOUT_S = 10.0
TOKEN_HEADER = "X-Zone-Editor-Token"
ZONE_EDITOR_TOKEN_FILE = "zone_editor.json"  # in state_dir, mode 0600: {"url", "token", "pid"} while running
SNAPSHOT_AUDIT_EVERY_S = 60.0  # the page refreshes the frame while open: one audit record a minute per camera
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
JPEG_QUALITY = 85
# The rules a zone can switch on, read from the schema so the page offers whatever it has.
ZONE_RULES = [name for name in Zone.model_fields if name not in ("id", "camera", "polygon", "classes")]
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _errors(err: ValidationError) -> str:
    """Every validation error as `path: message`, one per line."""
    lines = []
    for e in err.errors():
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        lines.append(f"{where or 'zones'}: {e['msg']}")
    return "\n".join(lines)


class ZoneEditor:
    """The editor's HTTP server, a context manager that owns its thread.

    snapshot(camera_id) -> the latest BGR uint8 (H, W, 3) frame or None;
    current_zones() -> the ZonesDoc in force; save_zones(doc) -> the version
    applied (doc.version is the current one + 1); camera_ids() -> ids;
    audit(action, **details) records one use (False: it could not);
    live(camera_id, polygons) -> what the agent sees now (LiveView.view) or None;
    token_file: where the token and URL are written (mode 0600) while running.
    port 0 picks a free port.
    """

    def __init__(
        self,
        *,
        snapshot: Callable[[str], np.ndarray | None],
        current_zones: Callable[[], ZonesDoc],
        save_zones: Callable[[ZonesDoc], int],
        camera_ids: Callable[[], list[str]],
        audit: Callable[..., Any],
        live: Callable[[str, dict], dict | None] = lambda camera_id, polygons: None,
        token_file: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
    ) -> None:
        if host not in LOOPBACK_BINDS:
            raise ValueError(f"the zone editor binds to loopback only ({' or '.join(LOOPBACK_BINDS)}), not {host!r}")
        self.snapshot, self.current_zones, self.save_zones = snapshot, current_zones, save_zones
        self.camera_ids, self.audit, self.live = camera_ids, audit, live
        self.token = secrets.token_urlsafe(24)  # per boot: a new one at every start
        self._token_file = token_file
        self._snapshots_audited: dict[str, float] = {}
        self._bind = (host, port)
        self._save_lock = threading.Lock()  # one save at a time: the version check and the save stay together
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the zone editor is not running")
        host, port = self._server.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    @property
    def page_url(self) -> str:
        """The URL to open: the page, with this boot's token."""
        return f"{self.url}?token={self.token}"

    def __enter__(self) -> ZoneEditor:
        server_class = type("_Server", (_Server,), {"address_family": _family(self._bind[0])})
        self._server = server_class(self._bind, type("_Handler", (_Handler,), {"editor": self}), bind_and_activate=False)
        try:
            self._server.server_bind()  # bound, not listening yet: the port stays closed until the token file is there
        except OSError:
            self._server.server_close()
            self._server = None
            raise
        if self._token_file is not None:  # before listening: whoever sees the port open finds the token
            data = {"url": self.page_url, "token": self.token, "pid": os.getpid()}
            try:
                write_atomic(self._token_file, json.dumps(data).encode(), mode=0o600)
            except OSError as e:  # a full disk: the log line below still has it
                log.error("zone_editor_token_file_unwritten", path=str(self._token_file), error=e.strerror or str(e))
        self._server.server_activate()
        self._thread = threading.Thread(target=self._server.serve_forever, name="zone-editor", daemon=True)
        self._thread.start()
        self.audit("zone_editor.start", url=self.url)  # never the token: the audit log is not secret
        log.info("zone_editor_started", url=self.page_url, token_file=str(self._token_file))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None
            if self._token_file is not None:
                self._token_file.unlink(missing_ok=True)
            self.audit("zone_editor.stop")

    def authorised(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())

    def audit_snapshot(self, camera_id: str) -> None:
        """The first look at a camera's frame, then at most one record a minute while the page refreshes it."""
        now = time.monotonic()
        if now - self._snapshots_audited.get(camera_id, -SNAPSHOT_AUDIT_EVERY_S) >= SNAPSHOT_AUDIT_EVERY_S:
            self._snapshots_audited[camera_id] = now
            self.audit("zone_editor.snapshot", camera=camera_id)

    def live_view(self, camera_id: str) -> dict | None:
        polygons = {z.id: z.polygon for z in self.current_zones().zones if z.camera == camera_id}
        return self.live(camera_id, polygons)

    def save(self, body: Any) -> tuple[HTTPStatus, dict]:
        """Validate and apply a posted `{"base_version": int, "doc": {"zones": [...], "lines": [...]}}`."""
        doc = body.get("doc") if isinstance(body, dict) else None
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("zones", "lines")):
            error = "a save sends the whole document: {base_version, doc: {zones: [...], lines: [...]}} ([] for none)"
            return HTTPStatus.BAD_REQUEST, {"error": error}
        with self._save_lock:
            current = self.current_zones()
            if body.get("base_version") != current.version:
                error = f"the zones changed since this page loaded them (now version {current.version}): reload"
                return HTTPStatus.CONFLICT, {"error": error}
            # Only zones and lines come from the page (and the cameras' ground calibrations when it sends
            # them); every other part of the document stays as it is.
            proposed = {
                **current.model_dump(mode="json", exclude={"zones", "lines"}),
                "zones": doc["zones"],
                "lines": doc["lines"],
                "version": current.version + 1,
            }
            if "ground" in doc:
                proposed["ground"] = doc["ground"]
            try:
                doc = ZonesDoc.model_validate(proposed)
            except ValidationError as e:
                self._audit_quietly("zone_editor.save_rejected", old_version=current.version, error=_errors(e))
                return HTTPStatus.BAD_REQUEST, {"error": _errors(e)}
            # Recorded before applying: a change the log cannot hold is not made.
            recorded = self.audit("zone_editor.save", old_version=current.version, zones=len(doc.zones), lines=len(doc.lines))
            if recorded is False:
                return HTTPStatus.INSUFFICIENT_STORAGE, {"error": _NO_ROOM}
            try:
                version = self.save_zones(doc)
            except (ValueError, ConfigError) as e:
                self._audit_quietly("zone_editor.save_rejected", old_version=current.version, error=str(e))
                return HTTPStatus.BAD_REQUEST, {"error": str(e)}
            except OSError as e:
                self._audit_quietly("zone_editor.save_rejected", old_version=current.version, error=str(e))
                if e.errno in FULL_DISK_ERRNOS:
                    return HTTPStatus.INSUFFICIENT_STORAGE, {"error": f"{_NO_ROOM} ({e.strerror or e})"}
                said = f"the box cannot write the zones file ({e.strerror or e}): nothing was changed"
                if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    said += f"; it must lie in {WRITABLE_FOLDER_ADVICE}"
                return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": said}
            self._audit_quietly("zone_editor.saved", old_version=current.version, new_version=version)
            return HTTPStatus.OK, {"version": version}

    def _audit_quietly(self, action: str, **details: Any) -> None:
        try:
            self.audit(action, **details)
        except Exception:  # the outcome is already decided; a lost record must not hide it from the page
            log.exception("zone_editor_audit_failed", action=action)


_NO_ROOM = "the box cannot write the change (is its disk full?): nothing was changed; free space and save again"


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _json_depth(raw: bytes) -> int:
    """How deeply `raw` (JSON) nests, found without parsing it (a parser would recurse)."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b'""', raw)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


class _Server(ThreadingHTTPServer):
    """At most MAX_CONNECTIONS served at once: one more is closed at once, so a flood of idle
    connections costs sockets, never threads."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            log.warning("zone_editor_busy", refused=self.refused)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("zone_editor_connection_failed", exc_info=True)  # in the log record, not raw on stderr


class _Handler(BaseHTTPRequestHandler):
    editor: ZoneEditor
    server_version = "edge-agent-zone-editor"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S  # a connection idle (or trickling) this long is closed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        log.debug("zone_editor_request", line=format % args)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _loopback_host(self) -> bool:
        """Host (and Origin, when sent) must name loopback: the DNS-rebinding guard."""
        for value in (self.headers.get("Host", ""), urlsplit(self.headers.get("Origin", "")).netloc):
            if value and urlsplit(f"//{value}").hostname not in _LOOPBACK_NAMES:
                return False
        return bool(self.headers.get("Host"))

    def _refused(self, page: bool = False) -> bool:
        """Answer (and True) unless the request names a loopback host and carries the token."""
        if not self._loopback_host():
            self._json(HTTPStatus.FORBIDDEN, {"error": "Host must be a loopback name"})
            return True
        token = self.headers.get(TOKEN_HEADER)
        if page and token is None:
            token = (parse_qs(urlsplit(self.path).query).get("token") or [None])[0]
        if not self.editor.authorised(token):
            error = "the zone editor needs this boot's token: open the URL in the agent's log (zone_editor_started)"
            self._json(HTTPStatus.UNAUTHORIZED, {"error": f"{error} or shown by `edge-agent status`"})
            return True
        return False

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if self._refused(page=path == "/"):
            return None
        editor = self.editor
        if path == "/":
            editor.audit("zone_editor.page")
            page = resources.files("agent.io").joinpath("zone_editor_page.html").read_bytes()
            return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        if path == "/api/cameras":
            return self._json(HTTPStatus.OK, {"cameras": list(editor.camera_ids())})
        if path == "/api/zones":
            doc = editor.current_zones().model_dump(mode="json", include={"version", "zones", "lines", "ground"})
            return self._json(HTTPStatus.OK, {**doc, "zone_rules": ZONE_RULES})
        if path.startswith("/api/snapshot/"):
            return self._snapshot(unquote(path.removeprefix("/api/snapshot/")))
        if path.startswith("/api/live/"):
            camera_id = unquote(path.removeprefix("/api/live/"))
            if camera_id not in editor.camera_ids():
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"no camera {camera_id!r}"})
            view = editor.live_view(camera_id)
            if view is None:
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"nothing seen on {camera_id} yet"})
            return self._json(HTTPStatus.OK, view)
        return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _snapshot(self, camera_id: str) -> None:
        if camera_id not in self.editor.camera_ids():
            return self._json(HTTPStatus.NOT_FOUND, {"error": f"no camera {camera_id!r}"})
        self.editor.audit_snapshot(camera_id)
        frame = self.editor.snapshot(camera_id)
        if frame is None:
            return self._json(HTTPStatus.NOT_FOUND, {"error": f"no frame from {camera_id} yet"})
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "cannot encode the frame"})
        self._send(HTTPStatus.OK, jpeg.tobytes(), "image/jpeg")

    def do_POST(self) -> None:
        if self._refused():
            return None
        if urlsplit(self.path).path != "/api/zones":
            return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
        if self.headers.get_content_type() != "application/json":
            return self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be parsed as the next request
            return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY_BYTES} bytes"})
        raw = self.rfile.read(length)
        if _json_depth(raw) > MAX_JSON_DEPTH:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": f"body nests deeper than {MAX_JSON_DEPTH} levels"})
        try:
            body = json.loads(raw)
        except ValueError:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "body is not JSON"})
        try:
            status, payload = self.editor.save(body)
        except Exception:
            log.exception("zone_editor_save_failed")
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "the save failed on the box: see its log"}
        self._json(status, payload)
