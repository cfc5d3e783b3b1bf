"""The applier's own thread: MQTT callbacks hand messages over without blocking on downloads."""

from __future__ import annotations

import threading

import structlog

from agent.ota.applier import Applier
from agent.ota.errors import OtaError

log = structlog.get_logger(__name__)


class OtaWorker:
    """Context manager owning one thread: it resumes an interrupted update first, then applies
    the newest authenticated manifest of each kind, one at a time.

    `submit` (on paho's thread) authenticates what arrives at once, cheap checks first: a
    message that does not parse or verify is logged and counted, never queued. Of the rest
    only the newest version per kind waits, so no flood (junk, or replays of older
    manifests) can push a valid manifest out."""

    def __init__(self, applier: Applier) -> None:
        self._applier = applier
        self._cond = threading.Condition()
        self._pending: dict[str, tuple[int, bytes]] = {}  # kind -> (version, message)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="ota", daemon=True)
        self.resumed = threading.Event()
        self.refused = 0  # messages refused (unverified here, or by the applier): shown on health

    def submit(self, payload: bytes) -> bool:
        """Keep an authenticated message for the worker (from paho's thread: never blocks on an
        update); False if refused (it did not parse or verify) or older than one waiting."""
        payload = bytes(payload)
        try:
            manifest = self._applier.authenticate(payload)
        except OtaError as exc:
            self.refused += 1
            log.warning("ota_unverified_refused", code=exc.code, error=exc.message, refused=self.refused)
            return False
        with self._cond:
            waiting = self._pending.get(manifest.kind)
            if waiting is not None and waiting[0] > manifest.version:
                return False
            self._pending[manifest.kind] = (manifest.version, payload)
            self._cond.notify()
        return True

    def __enter__(self) -> OtaWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Stop after the message being applied: an update cut short here resumes at the next start,
        # and the retained manifests that wait come again with the next connection.
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def _next(self) -> bytes | None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._stopping)
            if self._stopping:
                return None
            return self._pending.pop(next(iter(self._pending)))[1]

    def _run(self) -> None:
        try:
            self._applier.resume()
        except Exception:  # the applier reports its own failures; this is a bug or an unreadable state
            log.exception("ota_resume_failed")
        self.resumed.set()
        while (payload := self._next()) is not None:
            try:
                if self._applier.apply(payload).state == "refused":
                    self.refused += 1
            except Exception:
                log.exception("ota_apply_failed")
