"""What systemd hears from a `Type=notify` service: a datagram socket read as systemd reads it."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifyListener:
    """Binds `path` and records every assignment (`READY=1`, `WATCHDOG=1`, ...) with the monotonic time it came.

    Give the agent `env()` (NOTIFY_SOCKET, and WATCHDOG_USEC to arm its watchdog); use as a context manager.
    """

    def __init__(self, path: Path, watchdog_usec: int = 400_000) -> None:
        self.path = path
        self.watchdog_usec = watchdog_usec
        self.heard: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="notify-listener", daemon=True)

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": str(self.watchdog_usec)}

    @property
    def notes(self) -> list[str]:
        return [note for _, note in self.heard]

    def since(self, t: float) -> list[str]:
        """The assignments heard at or after monotonic time `t`."""
        return [note for at, note in self.heard if at >= t]

    def __enter__(self) -> NotifyListener:
        self._sock.bind(str(self.path))
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def _listen(self) -> None:
        # runs until told to stop, then reads what is still queued: nothing the agent sent is missed
        while True:
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                if self._stop.is_set():
                    return
                continue
            now = time.monotonic()
            self.heard.extend((now, note) for note in data.decode().splitlines())
