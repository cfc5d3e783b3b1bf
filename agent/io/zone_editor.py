"""The zone editor: a small web page on 127.0.0.1 where a technician draws zones and lines
on a camera's current frame and saves a new zones version, applied live.

Off by default; the agent starts it when `zone_editor.enabled` is set. It
listens on loopback only (any other address is refused), so the frame never
leaves the box: technicians reach it through an SSH tunnel
(`ssh -L 8765:127.0.0.1:8765 box`). Defences for a page on loopback:
- Host header must be a loopback name, so a DNS-rebinding page cannot talk to it;
- POST needs the `X-Zone-Editor` header: a cross-site form cannot set one, and
  a cross-site fetch that sets it needs a CORS preflight this server never grants;
- bodies are capped at `MAX_BODY_BYTES`; every response is `no-store` with a
  strict Content-Security-Policy.

Saves are validated with the config's own `ZonesDoc` schema here, then by
`save_zones` (the agent's callback, which runs `check_zones` against the
cameras and the model's classes and raises ValueError or ConfigError).
Every use is audited through `audit(action, **details)`; a save whose audit
record cannot be written is refused.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
import structlog
from pydantic import ValidationError

from agent.settings.config import ConfigError
from agent.settings.zones import Zone, ZonesDoc

__all__ = ["MAX_BODY_BYTES", "ZoneEditor"]

log = structlog.get_logger(__name__)

LOOPBACK_BINDS = ("127.0.0.1", "::1")
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
MAX_BODY_BYTES = 256 * 1024
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
    audit(action, **details) records one use. port 0 picks a free port.
    """

    def __init__(
        self,
        *,
        snapshot: Callable[[str], np.ndarray | None],
        current_zones: Callable[[], ZonesDoc],
        save_zones: Callable[[ZonesDoc], int],
        camera_ids: Callable[[], list[str]],
        audit: Callable[..., Any],
        host: str = "127.0.0.1",
        port: int = 8765,
    ) -> None:
        if host not in LOOPBACK_BINDS:
            raise ValueError(f"the zone editor binds to loopback only ({' or '.join(LOOPBACK_BINDS)}), not {host!r}")
        self.snapshot, self.current_zones, self.save_zones = snapshot, current_zones, save_zones
        self.camera_ids, self.audit = camera_ids, audit
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

    def __enter__(self) -> ZoneEditor:
        server_class = type("_Server", (ThreadingHTTPServer,), {"address_family": _family(self._bind[0])})
        self._server = server_class(self._bind, type("_Handler", (_Handler,), {"editor": self}))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="zone-editor", daemon=True)
        self._thread.start()
        self.audit("zone_editor.start", url=self.url)
        log.info("zone_editor_started", url=self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None
            self.audit("zone_editor.stop")

    def save(self, body: Any) -> tuple[HTTPStatus, dict]:
        """Validate and apply a posted `{"base_version": int, "doc": {"zones": [...], "lines": [...]}}`."""
        if not isinstance(body, dict) or not isinstance(body.get("doc"), dict):
            return HTTPStatus.BAD_REQUEST, {"error": "expected {base_version, doc: {zones, lines}}"}
        with self._save_lock:
            current = self.current_zones()
            if body.get("base_version") != current.version:
                error = f"the zones changed since this page loaded them (now version {current.version}): reload"
                return HTTPStatus.CONFLICT, {"error": error}
            # Only zones and lines come from the page; every other part of the document stays as it is.
            proposed = {
                **current.model_dump(mode="json", exclude={"zones", "lines"}),
                "zones": body["doc"].get("zones", []),
                "lines": body["doc"].get("lines", []),
                "version": current.version + 1,
            }
            try:
                doc = ZonesDoc.model_validate(proposed)
            except ValidationError as e:
                self._audit_quietly("zone_editor.save_rejected", old_version=current.version, error=_errors(e))
                return HTTPStatus.BAD_REQUEST, {"error": _errors(e)}
            # Recorded before applying: a change the log cannot hold is not made.
            self.audit("zone_editor.save", old_version=current.version, zones=len(doc.zones), lines=len(doc.lines))
            try:
                version = self.save_zones(doc)
            except (ValueError, ConfigError) as e:
                self._audit_quietly("zone_editor.save_rejected", old_version=current.version, error=str(e))
                return HTTPStatus.BAD_REQUEST, {"error": str(e)}
            self._audit_quietly("zone_editor.saved", old_version=current.version, new_version=version)
            return HTTPStatus.OK, {"version": version}

    def _audit_quietly(self, action: str, **details: Any) -> None:
        try:
            self.audit(action, **details)
        except Exception:  # the outcome is already decided; a lost record must not hide it from the page
            log.exception("zone_editor_audit_failed", action=action)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class _Handler(BaseHTTPRequestHandler):
    editor: ZoneEditor
    server_version = "edge-agent-zone-editor"
    sys_version = ""

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

    def do_GET(self) -> None:
        if not self._loopback_host():
            return self._json(HTTPStatus.FORBIDDEN, {"error": "Host must be a loopback name"})
        path = urlsplit(self.path).path
        editor = self.editor
        if path == "/":
            editor.audit("zone_editor.page")
            page = resources.files("agent.io").joinpath("zone_editor_page.html").read_bytes()
            return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        if path == "/api/cameras":
            return self._json(HTTPStatus.OK, {"cameras": list(editor.camera_ids())})
        if path == "/api/zones":
            doc = editor.current_zones().model_dump(mode="json", include={"version", "zones", "lines"})
            return self._json(HTTPStatus.OK, {**doc, "zone_rules": ZONE_RULES})
        if path.startswith("/api/snapshot/"):
            return self._snapshot(unquote(path.removeprefix("/api/snapshot/")))
        return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _snapshot(self, camera_id: str) -> None:
        if camera_id not in self.editor.camera_ids():
            return self._json(HTTPStatus.NOT_FOUND, {"error": f"no camera {camera_id!r}"})
        self.editor.audit("zone_editor.snapshot", camera=camera_id)
        frame = self.editor.snapshot(camera_id)
        if frame is None:
            return self._json(HTTPStatus.NOT_FOUND, {"error": f"no frame from {camera_id} yet"})
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "cannot encode the frame"})
        self._send(HTTPStatus.OK, jpeg.tobytes(), "image/jpeg")

    def do_POST(self) -> None:
        if not self._loopback_host():
            return self._json(HTTPStatus.FORBIDDEN, {"error": "Host must be a loopback name"})
        if urlsplit(self.path).path != "/api/zones":
            return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
        if self.headers.get("X-Zone-Editor") != "1":
            return self._json(HTTPStatus.FORBIDDEN, {"error": "missing X-Zone-Editor header"})
        if self.headers.get_content_type() != "application/json":
            return self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be parsed as the next request
            return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY_BYTES} bytes"})
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "body is not JSON"})
        try:
            status, payload = self.editor.save(body)
        except Exception:
            log.exception("zone_editor_save_failed")
            status, payload = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "the save failed on the box: see its log"}
        self._json(status, payload)
