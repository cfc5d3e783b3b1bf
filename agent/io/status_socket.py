"""The running agent's live figures for a technician on the box, on a local Unix socket.

Read-only by construction: the agent never reads from a connection; it writes one JSON
document (the figures of the moment) and closes. The socket lives in the state folder,
so the folder's permissions decide who may read it; nothing on the network can.
`edge-agent status` is the reader.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

SOCKET_NAME = "status.sock"
_MAX_BYTES = 1 << 20


class StatusSocket:
    """Serves `snapshot()` as one JSON line to every connection on `path`, from its own thread."""

    def __init__(self, path: Path, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.path = path

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    body = json.dumps(snapshot(), separators=(",", ":")).encode() + b"\n"
                except Exception:  # a faulty snapshot must never take the agent down
                    log.exception("status_snapshot_failed")
                    body = b'{"error": "the agent could not take its figures: see its log"}\n'
                self.request.sendall(body)

        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._handler = Handler

    def __enter__(self) -> StatusSocket:
        self.path.unlink(missing_ok=True)  # left by an agent that did not stop cleanly
        try:
            self._server = socketserver.ThreadingUnixStreamServer(str(self.path), self._handler)
        except OSError as e:  # e.g. a path beyond the 107 bytes a socket address holds
            log.warning("status_socket_unavailable", path=str(self.path), error=str(e))
            return self
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="status-socket", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.path.unlink(missing_ok=True)


class StatusUnavailable(Exception):
    """No running agent answered on the socket; the message says what to check."""


def read_status(path: Path, timeout_s: float = 3.0) -> dict[str, Any]:
    """The figures of the agent serving `path`; StatusUnavailable when none answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if sum(map(len, chunks)) > _MAX_BYTES:
                    raise StatusUnavailable(f"{path}: answer larger than {_MAX_BYTES} bytes")
    except FileNotFoundError:
        raise StatusUnavailable(f"{path} does not exist: is the agent running with this state_dir?") from None
    except PermissionError:
        raise StatusUnavailable(f"{path}: permission denied: run as the agent's user or with sudo") from None
    except ConnectionRefusedError:
        raise StatusUnavailable(f"{path}: nobody listens: the agent is not running (a stale socket)") from None
    except OSError as e:
        raise StatusUnavailable(f"{path}: {e.strerror or e}") from None
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise StatusUnavailable(f"{path}: the answer is not JSON: is this an edge-agent status socket?") from None
