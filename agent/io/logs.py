"""structlog set-up: JSON lines when not on a terminal, readable lines when on one.

One record is one line, whichever thread writes it: the record and its newline go out
in one write under one lock. A traceback is a field of its record (`exception`), never
raw text between records: exceptions that escape a thread, or the main thread, are
logged as records too (`thread_crashed`, `uncaught_exception`)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import structlog

_write_lock = threading.Lock()
log = structlog.get_logger(__name__)
SPARSE_EVERY_S = 10.0


class Sparse:
    """For a record that can come many times a second while a state lasts (a full disk: every event's write
    fails): each event name is logged the first time, then at most once every `every_s`, with `repeats`,
    how many of it were not logged since. Thread-safe."""

    def __init__(self, logger: Any, every_s: float = SPARSE_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger, self._every_s, self._clock = logger, every_s, clock
        self._lock = threading.Lock()
        self._due: dict[str, tuple[float, int]] = {}  # event -> (when it may be logged again, repeats since)

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        with self._lock:
            now = self._clock()
            due, repeats = self._due.get(event, (now, 0))
            if now < due:
                self._due[event] = (due, repeats + 1)
                return
            self._due[event] = (now + self._every_s, 0)
        getattr(self._logger, level)(event, **fields, **({"repeats": repeats} if repeats else {}))


class _Stderr:
    """Writes each line to the `sys.stderr` of the moment, not the one seen at set-up
    (a test harness or a daemoniser may swap it; a closed stream must not break logging)."""

    def msg(self, message: str) -> None:
        with _write_lock:
            try:
                sys.stderr.write(message + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure(level: str = "info") -> None:
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer = structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=lambda *_: _Stderr(),
        # not cached: a module's logger follows the configuration of the moment (a test's
        # capture_logs after an in-process CLI call); logging is rare enough for the cost
        cache_logger_on_first_use=False,
    )
    threading.excepthook = _thread_crashed
    sys.excepthook = _uncaught


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    log.error("thread_crashed", thread=args.thread.name if args.thread else None, exc_info=exc_info)


def _uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    log.error("uncaught_exception", exc_info=(exc_type, exc, tb))
