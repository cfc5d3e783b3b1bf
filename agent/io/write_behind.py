"""Events written behind the pipeline: its analytics thread hands a frame batch's rows over and goes
on, while a thread of this sink's own passes them on to the outbox (a disk commit, an fsync, now and
then a WAL checkpoint that takes a slow disk hundreds of ms).

Rows handed over while a commit runs go on together in the next one: one transaction and one fsync
for many frames, fewer writes to a box's flash. The order of the rows is kept. A row is durable once
the outbox has committed it, as before; until then it is in memory as the frame it came from was.
"""

from __future__ import annotations

import threading

import structlog

from agent.io.outbox import EventRow, EventSink

log = structlog.get_logger(__name__)

# Rows waiting beyond this many make `put` wait: a disk that far behind slows the pipeline down (its
# frames are then dropped by the cameras' queues) instead of this sink's memory growing without end.
# Payloads are capped (agent.wire.privacy), so this bounds the memory too.
MAX_WAITING_ROWS = 4096

class WriteBehind:
    """A sink that hands rows on to `inner` from a thread of its own; a context manager whose exit
    passes on every row handed over. An error of `inner` is raised by the next `put` (and by `close`),
    as `inner.put` would have raised it to the caller."""

    def __init__(self, inner: EventSink, max_waiting_rows: int = MAX_WAITING_ROWS) -> None:
        self._inner = inner
        self._max_waiting = max_waiting_rows
        self._waiting: list[EventRow] = []
        self._cond = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self._error_raised = False
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
        self._thread.start()

    def put(self, items: list[EventRow]) -> None:
        """Hand rows over; returns at once unless `max_waiting_rows` are already waiting."""
        if not items:
            return
        with self._cond:
            while len(self._waiting) >= self._max_waiting and self._error is None and not self._closing:
                self._cond.wait()
            self._raise_error()
            if self._closing:
                raise RuntimeError("write-behind sink closed: rows handed over after close")
            self._waiting.extend(items)
            self._cond.notify_all()

    def close(self) -> None:
        """Pass on every row handed over, then stop the thread (again: nothing); raises `inner`'s error
        if it failed and no `put` has raised it yet."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            if not self._error_raised:
                self._raise_error()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_error(self) -> None:
        if self._error is not None:
            self._error_raised = True
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting, []
                self._cond.notify_all()
            try:
                self._inner.put(batch)
            except BaseException as e:  # noqa: BLE001 - raised again on the pipeline's thread by `put`
                log.exception("write_behind_failed", rows=len(batch))
                with self._cond:
                    self._error = e
                    self._cond.notify_all()
                return
