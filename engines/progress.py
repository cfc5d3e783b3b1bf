"""The one progress bar of the long commands (calibrate, models fetch, fleet publish, the
evaluations): on stderr, one redrawn line on a terminal, a few plain lines in a log. No dependency."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

_WIDTH_CHARS = 30
# In a log file (not a terminal) redraws become lines: print only every quarter.
_LOG_STEPS = 4


def mebibytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


class Progress:
    """`with Progress(total, "label") as bar: bar.update(n)`; writes to `stream` (stderr by default).
    `show` formats the counts (e.g. `mebibytes` for a download); `shown=False` counts and writes nothing."""

    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, show: Callable[[int], str] = str, shown: bool = True
    ) -> None:
        self.total = max(1, total)
        self.label = label
        self.done = 0
        self._show = show
        self._stream = stream or sys.stderr
        self._shown = shown
        self._tty = shown and self._stream.isatty()
        self._last_step = -1

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        step = self.done * _LOG_STEPS // self.total
        if not self._shown:
            return
        if self._tty:
            self._stream.write("\r" + self._line())
        elif step != self._last_step:
            self._stream.write(self._line() + "\n")
        self._last_step = step
        self._stream.flush()

    def _line(self) -> str:
        filled = self.done * _WIDTH_CHARS // self.total
        bar = "#" * filled + "." * (_WIDTH_CHARS - filled)
        return f"{self.label} [{bar}] {self._show(self.done)}/{self._show(self.total)}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
