"""A loopback server (the zone editor, the Prometheus exporter) whose port another program holds.

Such a port is the box's problem, not the cameras': the agent runs on without the
server, logs a warning naming the address, the error and what to do, repeated every
RETRY_S seconds while it lasts, and starts the server as soon as the port is free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
RETRY_S = 30.0


class PortRetry(Generic[T]):
    """`open_server()` builds the server's context manager; binding its port may raise OSError
    (in use, not allowed), at construction or on entry. `server` is the entered server, None
    while its port is unavailable; `unavailable` then says why."""

    def __init__(
        self, name: str, address: str, setting: str, open_server: Callable[[], AbstractContextManager[T]]
    ) -> None:
        self._name, self._address, self._setting = name, address, setting
        self._open_server, self._retry_s = open_server, RETRY_S
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._entered: AbstractContextManager[T] | None = None
        self.server: T | None = None
        self.unavailable: str | None = None

    def __enter__(self) -> PortRetry[T]:
        if not self._try():
            self._thread = threading.Thread(target=self._retry, name=f"{self._name}-port", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        entered, self._entered, self.server = self._entered, None, None  # the retry thread has ended
        if entered is not None:
            entered.__exit__(None, None, None)

    def _retry(self) -> None:
        while not self._stop.wait(self._retry_s) and not self._try():
            pass

    def _try(self) -> bool:
        """Open the server; False (and a warning) if its port is unavailable."""
        try:
            manager = self._open_server()
            server = manager.__enter__()
        except OSError as e:
            self.unavailable = f"{self._address}: {e.strerror or e}"
            log.warning(
                f"{self._name}_port_unavailable", address=self._address, error=e.strerror or str(e),
                retry_s=self._retry_s,
                hint=f"another program may hold this port: set {self._setting} to a free port, or stop that program; "
                "the agent runs on without it and tries again",
            )  # fmt: skip
            return False
        self._entered, self.server, self.unavailable = manager, server, None
        return True
