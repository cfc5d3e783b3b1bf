"""A real HTTP server on loopback serving artifacts, with Range support and ways to misbehave on purpose."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Served:
    """One file: `body` is what the server has; the flags make it misbehave."""

    body: bytes
    drop_after_bytes: int | None = None  # close the connection after this many body bytes (first request only)
    hide_length: bool = False  # no Content-Length: the body runs until the connection closes
    ignore_range: bool = False
    requests: list[str | None] = field(default_factory=list)  # the Range header of each request
    sent_bytes: int = 0


class ArtifactServer:
    """ThreadingHTTPServer on 127.0.0.1 in a thread; `serve(name, Served)` then `url(name)`."""

    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.files))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def serve(self, name: str, served: Served) -> str:
        self.files[name] = served
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(files: dict[str, Served]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            served = files.get(self.path.lstrip("/"))
            if served is None:
                self.send_error(404)
                return
            range_header = self.headers.get("Range")
            first_request = not served.requests
            served.requests.append(range_header)
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            if match and not served.ignore_range:
                start = int(match.group(1))
                if start >= len(served.body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(served.body) - 1}/{len(served.body)}")
            else:
                self.send_response(200)
            body = served.body[start:]
            if not served.hide_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if first_request and served.drop_after_bytes is not None:
                body = body[: served.drop_after_bytes]
            try:
                self.wfile.write(body)
                served.sent_bytes += len(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading, as an oversized download must

    return Handler


@pytest.fixture
def artifact_server() -> Iterator[ArtifactServer]:
    server = ArtifactServer()
    yield server
    server.close()
