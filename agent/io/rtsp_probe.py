"""Why an RTSP camera does not open, in a technician's words: a DESCRIBE of our own, as a player sends.

OpenCV says only that an open failed; the cause (nothing listening, no answer, a
wrong path, a login refused) is in the camera's answer. `why_not_open` asks it on
one connection, within one deadline: DESCRIBE without a login and, when the camera
asks for one and the url has it, again with it (Digest MD5, as most cameras ask,
or Basic when that is what it asks). It reads the answers' status and login
challenge only, and never puts the password in what it returns.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import socket
import time
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import parse_http_list, parse_keqv_list

from agent.settings.camera import PERCENT_ENCODING

DEFAULT_PORT = 554
_MAX_ANSWER_BYTES = 16_384
_STATUS = re.compile(r"RTSP/1\.\d (\d{3})")


class _Unanswered(Exception):
    """The exchange ended without an answer; the message says why, for a technician."""


def why_not_open(url: str, timeout_s: float) -> str | None:
    """What stops `url` (rtsp://) from opening, with what to do, found within `timeout_s`; None when the
    camera serves the stream (what failed came after: a codec or a stream the decoder cannot read)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        return f"the url's port is not a number 1..65535 ({PERCENT_ENCODING})"
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    login = (unquote(parts.username), unquote(parts.password or "")) if parts.username is not None else None
    if login is not None and re.search(r'["\x00-\x1f\x7f]', login[0]):
        return "the url's user name holds a quote or a control character: correct it"
    bare = urlunsplit(parts._replace(netloc=where))
    try:
        with _Exchange(host, port, where, time.monotonic() + timeout_s) as exchange:
            status, challenges = exchange.describe(bare, None)
            if status == 401 and login is not None:
                authorization = _authorization(challenges, login, bare)
                if authorization is None:
                    schemes = sorted({c.split(" ", 1)[0] for c in challenges}) or ["no scheme"]
                    return f"the camera asks for a login this agent cannot give ({', '.join(schemes)})"
                status, _ = exchange.describe(bare, authorization)
                if status == 401:
                    return "the camera refused the user or password in the url (401 Unauthorized): check them"
    except _Unanswered as exc:
        return str(exc)
    if status == 401:
        return "the camera asks for a login (401 Unauthorized): put it in the url, rtsp://user:password@host/path"
    if status == 403:
        return "the camera refused this user the stream (403 Forbidden): give a user allowed to watch it"
    if status == 404:
        return f"the camera has no stream at {parts.path or '/'} (404 Not Found): check the path (the camera's manual)"
    if status == 200:
        return None
    return f"the camera answered DESCRIBE with {status}"


class _Exchange:
    """One connection to the camera, every step within the deadline."""

    def __init__(self, host: str, port: int, where: str, deadline: float) -> None:
        self._address, self._where, self._deadline = (host, port), where, deadline
        self._sock: socket.socket | None = None
        self._pending = b""
        self._cseq = 0

    def __enter__(self) -> _Exchange:
        try:
            self._sock = socket.create_connection(self._address, timeout=self._left())
        except (socket.gaierror, UnicodeError):  # UnicodeError: a name IDNA cannot encode (an empty label, ...)
            raise _Unanswered(f"cannot resolve {self._address[0]}: check the name, or give the camera's IP address") from None
        except ConnectionRefusedError:
            raise _Unanswered(f"nothing listens at {self._where} (connection refused): check the address, the port, "
                              "and that the camera is on") from None  # fmt: skip
        except TimeoutError:
            raise self._no_answer() from None
        except OSError as exc:
            raise _Unanswered(f"cannot reach {self._where}: {exc.strerror or type(exc).__name__}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._sock is not None:
            self._sock.close()

    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._no_answer()
        return left

    def _no_answer(self) -> _Unanswered:
        return _Unanswered(f"no answer from {self._where} in time: check the address, the network and the camera's "
                           "power")  # fmt: skip

    def describe(self, url: str, authorization: str | None) -> tuple[int, list[str]]:
        """The status of DESCRIBE `url` and the login challenges (WWW-Authenticate values) it came with."""
        assert self._sock is not None
        self._cseq += 1
        request = f"DESCRIBE {url} RTSP/1.0\r\nCSeq: {self._cseq}\r\nAccept: application/sdp\r\nUser-Agent: edge-agent\r\n"
        if authorization is not None:
            request += f"Authorization: {authorization}\r\n"
        try:
            self._sock.settimeout(self._left())
            self._sock.sendall((request + "\r\n").encode("utf-8"))
        except OSError as exc:
            raise _Unanswered(f"{self._where} closed the connection: {exc.strerror or type(exc).__name__}") from None
        head = self._read_head()
        lines = head.splitlines()
        status = _STATUS.match(lines[0]) if lines else None
        if status is None:
            raise _Unanswered(f"{self._where} answers, but not as an RTSP camera: check the port (RTSP's is usually 554)")
        headers = [(name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
        length = next((v for n, v in headers if n == "content-length"), "0")
        self._skip(int(length) if length.isdigit() else 0)  # the body (an error page), before the next request
        return int(status.group(1)), [v for n, v in headers if n == "www-authenticate"]

    def _read_head(self) -> str:
        """The answer's status line and headers (CRLF or LF line ends); what came in time, if the rest did not."""
        assert self._sock is not None
        while not (end := re.search(rb"\r?\n\r?\n", self._pending)) and len(self._pending) < _MAX_ANSWER_BYTES:
            try:
                self._sock.settimeout(self._left())
                chunk = self._sock.recv(4096)
            except (TimeoutError, _Unanswered):
                chunk = b""
                if not self._pending:
                    raise self._no_answer() from None
            except OSError as exc:
                raise _Unanswered(f"{self._where} closed the connection: {exc.strerror or type(exc).__name__}") from None
            if not chunk:
                if not self._pending:
                    raise _Unanswered(f"{self._where} closed the connection without answering: check the port "
                                      "(RTSP's is usually 554)")  # fmt: skip
                break
            self._pending += chunk
        cut = end.end() if end else len(self._pending)
        head, self._pending = self._pending[:cut], self._pending[cut:]
        return head.decode("latin-1")

    def _skip(self, length: int) -> None:
        assert self._sock is not None
        while len(self._pending) < length:
            try:
                self._sock.settimeout(self._left())
                chunk = self._sock.recv(min(length - len(self._pending), 65_536))
            except (OSError, _Unanswered):
                break  # the status is known; a second request would go unanswered, and say so
            if not chunk:
                break
            self._pending += chunk
        self._pending = self._pending[length:]


def _authorization(challenges: list[str], login: tuple[str, str], url: str) -> str | None:
    """The Authorization answering the camera's challenges: Digest (MD5, RFC 2617) when it offers it, else
    Basic when it asks for that; None for what it offers that this cannot answer (the password is never
    sent to a camera that did not ask for Basic)."""
    user, password = login
    by_scheme = {c.split(" ", 1)[0].lower(): c.split(" ", 1)[1] if " " in c else "" for c in reversed(challenges)}
    if "digest" in by_scheme:
        fields = parse_keqv_list(parse_http_list(by_scheme["digest"]))
        if fields.get("algorithm", "MD5").upper() != "MD5":
            return None
        realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
        md5 = lambda text: hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: E731 - the scheme's own hash
        ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"DESCRIBE:{url}")
        answer = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{url}"'
        if "opaque" in fields:
            answer += f', opaque="{fields["opaque"]}"'
        if "auth" in [q.strip() for q in fields.get("qop", "").split(",")]:
            cnonce = secrets.token_hex(8)
            return answer + f', qop=auth, nc=00000001, cnonce="{cnonce}", response="{md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")}"'
        return answer + f', response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
    if "basic" in by_scheme:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None
