"""A tiny stderr progress bar (no dependency): one redrawn line on a terminal, a few plain lines in logs."""

from __future__ import annotations

import sys
from typing import TextIO

_WIDTH_CHARS = 30
# In a log file (not a terminal) redraws become lines: print only every quarter.
_LOG_STEPS = 4


class Progress:
    """`with Progress(total, "label") as bar: bar.update(n)`; writes to `stream` (stderr by default)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.label = label
        self.done = 0
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._last_step = -1

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        step = self.done * _LOG_STEPS // self.total
        if self._tty:
            self._stream.write("\r" + self._line())
        elif step != self._last_step:
            self._stream.write(self._line() + "\n")
        self._last_step = step
        self._stream.flush()

    def _line(self) -> str:
        filled = self.done * _WIDTH_CHARS // self.total
        return f"{self.label} [{'#' * filled}{'.' * (_WIDTH_CHARS - filled)}] {self.done}/{self.total}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
