"""The RTSP probe against answers a real GStreamer server does not give (tests/integration/test_rtsp_probe.py asks
that one): scripted replies on a real loopback socket, as odd cameras and things that are not cameras answer."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from agent.io.rtsp_probe import why_not_open
from testbed.services import free_port

Reply = Callable[[bytes], bytes | None]  # request -> answer (None: say nothing more)


class Peer:
    """Accepts one connection at a time on 127.0.0.1 and answers each request with `reply(request)`; records
    the requests. `trickle_s`: send the answer a byte at a time, this far apart."""

    def __init__(self, reply: Reply, trickle_s: float = 0.0, family: int = socket.AF_INET) -> None:
        self.reply, self.trickle_s = reply, trickle_s
        self.requests: list[bytes] = []
        self._server = socket.socket(family)
        self._server.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self._server.listen()
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.1)
                buffer = b""
                while not self._stop.is_set():
                    try:
                        chunk = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:  # the probe gave up and reset the connection
                        break
                    if not chunk:
                        break
                    buffer += chunk
                    while b"\r\n\r\n" in buffer:
                        request, buffer = buffer.split(b"\r\n\r\n", 1)
                        self.requests.append(request)
                        answer = self.reply(request)
                        if answer is not None and not self._send(conn, answer):
                            return

    def _send(self, conn: socket.socket, answer: bytes) -> bool:
        """False once stopped; a probe that gave up (a reset connection) only ends this connection."""
        pieces = [answer] if not self.trickle_s else [bytes([b]) for b in answer]
        for piece in pieces:
            if self.trickle_s and self._stop.wait(self.trickle_s):
                return False
            try:
                conn.sendall(piece)
            except OSError:
                return True
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._server.close()


@pytest.fixture
def peer() -> Iterator[Callable[..., Peer]]:
    peers: list[Peer] = []

    def start(reply: Reply, **options: object) -> Peer:
        peers.append(Peer(reply, **options))  # type: ignore[arg-type]
        return peers[-1]

    yield start
    for p in peers:
        p.close()


def _header(request: bytes, name: str) -> str | None:
    match = re.search(rf"^{name}: (.*)$", request.decode(), re.M | re.I)
    return match.group(1).strip() if match else None


def test_lf_line_ends_and_a_body_are_read(peer) -> None:
    camera = peer(lambda r: b"RTSP/1.0 404 Not Found\nCSeq: 1\nContent-Length: 5\n\nnope!")
    assert why_not_open(f"rtsp://127.0.0.1:{camera.port}/cam", 2.0) == (
        "the camera has no stream at /cam (404 Not Found): check the path (the camera's manual)"
    )


def test_a_peer_that_trickles_is_given_up_on_at_the_deadline(peer) -> None:
    camera = peer(lambda r: b"RTSP/1.0 200 OK\r\n" + b"X: y\r\n" * 1000, trickle_s=0.2)
    started = time.monotonic()
    said = why_not_open(f"rtsp://127.0.0.1:{camera.port}/cam", 1.0)
    assert time.monotonic() - started < 2.0
    assert said == f"127.0.0.1:{camera.port} answers, but not as an RTSP camera: check the port (RTSP's is usually 554)"


def test_a_header_that_never_ends_is_cut_and_its_status_read(peer) -> None:
    camera = peer(lambda r: b"RTSP/1.0 200 OK\r\n" + b"X-Pad: " + b"a" * 40_000)
    assert why_not_open(f"rtsp://127.0.0.1:{camera.port}/cam", 2.0) is None


def test_an_http_server_is_not_a_camera(peer) -> None:
    camera = peer(lambda r: "HTTP/1.1 400 Bad Request\r\n\r\nÿ non-ASCII".encode("latin-1"))
    assert "answers, but not as an RTSP camera" in why_not_open(f"rtsp://127.0.0.1:{camera.port}/cam", 2.0)


REALM, NONCE, OPAQUE = "Cam, Inc", "5a2b", "0pq"


def _digest_camera(qop: bool) -> Reply:
    """A camera asking for Digest with a realm holding a comma, an opaque and (`qop`) qop=auth; it checks the
    answer by RFC 2617 and serves the stream (200) only to admin / Secret@123 on the same connection."""

    def reply(request: bytes) -> bytes:
        authorization = _header(request, "Authorization")
        cseq = _header(request, "CSeq")
        if authorization is not None:
            fields = dict(re.findall(r'(\w+)="?([^",]*)"?', authorization.replace(f'realm="{REALM}"', "")))
            md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
            ha1, ha2 = md5(f"admin:{REALM}:Secret@123"), md5(f"DESCRIBE:{fields['uri']}")
            tail = f"{fields['nc']}:{fields['cnonce']}:auth:{ha2}" if qop else ha2
            if fields.get("opaque") == OPAQUE and fields["response"] == md5(f"{ha1}:{NONCE}:{tail}"):
                return f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n".encode()
        challenge = f'Digest realm="{REALM}", nonce="{NONCE}", opaque="{OPAQUE}"' + (', qop="auth"' if qop else "")
        return (f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\nWWW-Authenticate: Basic realm=\"x\"\r\n"
                f"WWW-Authenticate: {challenge}\r\nContent-Length: 0\r\n\r\n").encode()  # fmt: skip

    return reply


@pytest.mark.parametrize("qop", [False, True], ids=["RFC 2069", "qop=auth"])
def test_digest_is_answered_as_the_rfc_says_on_one_connection(qop: bool, peer) -> None:
    camera = peer(_digest_camera(qop))
    assert why_not_open(f"rtsp://admin:Secret@123@127.0.0.1:{camera.port}/cam", 2.0) is None
    assert why_not_open(f"rtsp://admin:Secret%40124@127.0.0.1:{camera.port}/cam", 2.0) == (
        "the camera refused the user or password in the url (401 Unauthorized): check them"
    )
    assert [_header(r, "CSeq") for r in camera.requests] == ["1", "2", "1", "2"]  # two connections, two asks each
    assert all(_header(r, "Authorization").startswith("Digest ") for r in camera.requests[1::2])  # Digest chosen


def test_the_password_goes_only_to_a_login_the_camera_asks_for(peer) -> None:
    camera = peer(lambda r: b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Bearer realm=\"x\"\r\n\r\n")
    assert why_not_open(f"rtsp://admin:Secret@127.0.0.1:{camera.port}/cam", 2.0) == (
        "the camera asks for a login this agent cannot give (Bearer)"
    )
    assert len(camera.requests) == 1 and _header(camera.requests[0], "Authorization") is None


def test_odd_urls_are_said_not_raised() -> None:
    assert why_not_open("rtsp://admin:Secret#9@127.0.0.1/cam", 1.0).startswith("the url's port is not a number")
    assert why_not_open("rtsp://a..b/cam", 1.0) == "cannot resolve a..b: check the name, or give the camera's IP address"
    port = free_port()
    assert why_not_open(f"rtsp://[::1]:{port}/cam", 1.0).startswith(f"nothing listens at [::1]:{port} (connection refused)")


def test_a_camera_on_ipv6_is_asked(peer) -> None:
    camera = peer(lambda r: b"RTSP/1.0 404 Not Found\r\nCSeq: 1\r\n\r\n", family=socket.AF_INET6)
    assert why_not_open(f"rtsp://[::1]:{camera.port}/x", 2.0).startswith("the camera has no stream at /x (404")
    assert camera.requests[0].startswith(f"DESCRIBE rtsp://[::1]:{camera.port}/x RTSP/1.0".encode())
