"""The applier's own thread: MQTT callbacks hand messages over without blocking on downloads."""

from __future__ import annotations

import queue
import threading

import structlog

from agent.ota.applier import Applier

log = structlog.get_logger(__name__)

# Retained manifests arrive in a burst on every connect (one per kind and per
# device/group topic); more than this waiting means something floods us.
MAX_PENDING = 16


class OtaWorker:
    """Context manager owning one thread: it resumes an interrupted update first, then applies
    submitted messages one at a time, in arrival order."""

    def __init__(self, applier: Applier) -> None:
        self._applier = applier
        self._queue: queue.Queue[bytes | None] = queue.Queue(MAX_PENDING)
        self._thread = threading.Thread(target=self._run, name="ota", daemon=True)
        self.resumed = threading.Event()

    def submit(self, payload: bytes) -> bool:
        """Queue a received message (from paho's thread: never blocks); False if dropped because full."""
        try:
            self._queue.put_nowait(bytes(payload))
            return True
        except queue.Full:
            log.warning("ota_queue_full")
            return False

    def __enter__(self) -> OtaWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Stop after the message being applied: an update cut short here resumes at the next start.
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            self._applier.resume()
        except Exception:  # the applier reports its own failures; this is a bug or an unreadable state
            log.exception("ota_resume_failed")
        self.resumed.set()
        while (payload := self._queue.get()) is not None:
            try:
                self._applier.apply(payload)
            except Exception:
                log.exception("ota_apply_failed")
