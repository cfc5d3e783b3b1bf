"""Why an RTSP camera does not open, in a technician's words: one DESCRIBE of our own, as a player sends.

OpenCV says only that an open failed; the cause (nothing listening, no answer, a
wrong path, a login refused) is in the camera's answer. `why_not_open` asks it:
a TCP connection, then DESCRIBE without a login and, when the camera asks for one
and the url has it, again with it (Digest, as most cameras ask, or Basic). It
reads the status line only and never logs the password.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from urllib.parse import unquote, urlsplit, urlunsplit

DEFAULT_PORT = 554
_MAX_HEADER_BYTES = 16_384


def why_not_open(url: str, timeout_s: float) -> str | None:
    """What stops `url` (rtsp://, not rtsps://) from opening, with what to do; None when the camera serves
    the stream (what failed came after: a codec or a stream the decoder cannot read)."""
    parts = urlsplit(url)
    if parts.scheme != "rtsp" or not parts.hostname:
        raise ValueError(f"not an rtsp:// url with a host: {parts.scheme}://...")
    host, port = parts.hostname, parts.port or DEFAULT_PORT
    login = (unquote(parts.username), unquote(parts.password or "")) if parts.username is not None else None
    bare = urlunsplit(parts._replace(netloc=f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"))
    first = _describe(host, port, bare, timeout_s, None)
    if isinstance(first, str):
        return first
    status, headers = first
    if status == 401 and login is not None:
        second = _describe(host, port, bare, timeout_s, _authorization(headers, login, bare))
        if isinstance(second, str):
            return second
        status, headers = second
        if status == 401:
            return "the camera refused the user or password in the url (401 Unauthorized): check them"
    if status == 401:
        return "the camera asks for a login (401 Unauthorized): put it in the url, rtsp://user:password@host/path"
    if status == 404:
        return f"the camera has no stream at {parts.path or '/'} (404 Not Found): check the path (the camera's manual)"
    if status == 200:
        return None
    return f"the camera answered DESCRIBE with {status}"


def _describe(host: str, port: int, url: str, timeout_s: float, authorization: str | None) -> tuple[int, dict] | str:
    """(status, lower-cased headers) of DESCRIBE `url`, or the reason there is none, said for a technician."""
    request = f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\nUser-Agent: edge-agent\r\n"
    if authorization is not None:
        request += f"Authorization: {authorization}\r\n"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall((request + "\r\n").encode())
            answer = b""
            while b"\r\n\r\n" not in answer and len(answer) < _MAX_HEADER_BYTES:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except socket.gaierror:
        return f"cannot resolve {host}: check the name, or give the camera's IP address"
    except ConnectionRefusedError:
        return f"nothing listens at {host}:{port} (connection refused): check the address, the port, and that the camera is on"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout_s:g} s: check the address, the network and the camera's power"
    except OSError as exc:
        return f"cannot reach {host}:{port}: {exc.strerror or exc}"
    if not answer:
        return f"{host}:{port} closed the connection without answering: check the port (RTSP's is usually 554)"
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    status = re.match(r"RTSP/1\.\d (\d{3})", lines[0])
    if status is None:
        return f"{host}:{port} answers, but not as an RTSP camera: check the port"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return int(status.group(1)), headers


def _authorization(headers: dict, login: tuple[str, str], url: str) -> str:
    """The Authorization header answering the camera's WWW-Authenticate (Digest, RFC 2069/2617 MD5, else Basic)."""
    user, password = login
    challenge = headers.get("www-authenticate", "")
    if not challenge.lower().startswith("digest"):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge[len("digest"):]))
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731 - the digest's own hash, not a secret store
    ha1, ha2 = md5(f"{user}:{fields.get('realm', '')}:{password}"), md5(f"DESCRIBE:{url}")
    nonce = fields.get("nonce", "")
    answer = f'Digest username="{user}", realm="{fields.get("realm", "")}", nonce="{nonce}", uri="{url}"'
    if "auth" in fields.get("qop", "").split(","):
        cnonce = hashlib.sha256(nonce.encode()).hexdigest()[:16]
        response = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        return answer + f', qop=auth, nc=00000001, cnonce="{cnonce}", response="{response}"'
    return answer + f', response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
