"""The sd_notify protocol, spoken by the agent itself (no systemd Python package).

systemd passes `NOTIFY_SOCKET` (a filesystem path, or `@name` for an abstract
socket) to a `Type=notify` service; the service sends newline-separated
`KEY=value` assignments as one datagram. Outside systemd the variable is unset
and every call here is a no-op, so the same binary runs under a shell, in tests
and under the unit.

`Watchdog` ties `WATCHDOG=1` to real progress: the pipeline calls `beat()` per
processed frame, and per turn of its loop that found no frame (every camera
offline and retrying is waiting, not hung: a restart would not bring a camera
back, and five of them in ten minutes would leave the service stopped); the
timer thread pings only if a beat happened since the last ping, so a hung
pipeline (inference or analysis stuck) stops the pings and systemd restarts it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

import structlog

__all__ = [
    "Watchdog",
    "notify",
    "ready",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval_s",
]

_log = structlog.get_logger(__name__)


def _socket_address() -> str | None:
    """The datagram address from `NOTIFY_SOCKET`, `@` mapped to Linux's abstract namespace."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    if path.startswith("@"):
        return "\0" + path[1:]
    return path


def notify(*assignments: str) -> bool:
    """Send `KEY=value` assignments as one datagram to `$NOTIFY_SOCKET`.

    Returns True when sent, False when there is no socket or sending failed:
    a lost notification must never take the pipeline down (systemd's own
    watchdog is what acts on silence), so failures are logged, not raised.
    """
    address = _socket_address()
    if address is None:
        return False
    message = "\n".join(assignments).encode("utf-8")
    try:
        # non-blocking: a receiver that does not read (its queue holds ~10 datagrams)
        # must never stall the watchdog thread or the shutdown that joins it
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
            sock.sendto(message, address)
    except OSError as exc:
        _log.warning("sd_notify_failed", socket=os.environ.get("NOTIFY_SOCKET"), error=str(exc))
        return False
    return True


def _one_line(text: str) -> str:
    # A newline would start a new assignment: a summary could otherwise inject e.g. READY=1.
    return " ".join(text.split())


def ready() -> bool:
    """Tell systemd start-up is complete (cameras and engine up): `READY=1`."""
    return notify("READY=1")


def status(text: str) -> bool:
    """Set the one-line status shown by `systemctl status`: `STATUS=text`."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog() -> bool:
    """Ping the service watchdog: `WATCHDOG=1`. Prefer `Watchdog`, which pings only on progress."""
    return notify("WATCHDOG=1")


def stopping() -> bool:
    """Tell systemd a clean shutdown has begun: `STOPPING=1`."""
    return notify("STOPPING=1")


def watchdog_interval_s() -> float | None:
    """Seconds between watchdog pings, or None when no watchdog is armed for this process.

    Half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) recommends, so one late
    ping never trips it. `WATCHDOG_PID`, when set, names the process the
    watchdog is meant for; a child that inherited the environment must not ping.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        timeout_us = int(usec)
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    if timeout_us <= 0:
        return None
    return timeout_us / 2 / 1e6


class Watchdog:
    """Pings `WATCHDOG=1` only while the pipeline makes progress, and reports `STATUS=`.

    Use as a context manager; it owns its timer thread. The pipeline calls
    `beat()` for every processed frame and every idle turn of its loop (cheap:
    one integer increment, no lock).
    Every `interval_s` the thread sends one datagram: `WATCHDOG=1` if the
    watchdog is armed and at least one beat happened since the previous tick,
    plus `STATUS=<summary()>` when a summary callback is given.

    interval_s: tick period; defaults to `watchdog_interval_s()` or, when no
    watchdog is armed, `status_interval_s` (status updates only).
    """

    def __init__(
        self,
        summary: Callable[[], str] | None = None,
        *,
        interval_s: float | None = None,
        status_interval_s: float = 10.0,
    ) -> None:
        self._summary = summary
        armed_interval_s = watchdog_interval_s()
        self._armed = armed_interval_s is not None
        self._interval_s = interval_s or armed_interval_s or status_interval_s
        self._beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Record progress. Called from the pipeline's threads."""
        # A lost increment under a race is harmless: the tick only asks "did it change?".
        self._beats += 1

    def __enter__(self) -> Watchdog:
        if _socket_address() is None or not (self._armed or self._summary):
            return self  # nothing to send: no thread, beat() stays a counter
        # The first snapshot is taken here, not in the thread: a beat right after start
        # (before the thread runs) must count as progress at the first tick.
        self._thread = threading.Thread(target=self._run, args=(self._beats,), name="sd-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, seen: int) -> None:
        while not self._stop.wait(self._interval_s):
            beats = self._beats
            assignments = []
            if self._armed and beats != seen:
                assignments.append("WATCHDOG=1")
            seen = beats
            text = self._summary_text()
            if text is not None:
                assignments.append(f"STATUS={text}")
            if assignments:
                notify(*assignments)

    def _summary_text(self) -> str | None:
        if self._summary is None:
            return None
        try:
            return _one_line(self._summary())
        except Exception as exc:  # a faulty summary must not stop the watchdog thread
            _log.warning("sd_status_summary_failed", error=repr(exc))
            return None
