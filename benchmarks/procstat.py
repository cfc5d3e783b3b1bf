"""CPU and resident memory of another process (and of the whole box), sampled from /proc."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        # the command name may hold spaces: fields are counted after its closing parenthesis
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE_BYTES / 2**20


def box_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # steal included, guest time is already inside user
    return (total - idle) / _TICKS_PER_S, total / _TICKS_PER_S


@dataclass(frozen=True, slots=True)
class Sample:
    t_mono: float
    cpu_s: float
    rss_mb: float
    box_busy_s: float
    box_total_s: float


@dataclass
class ProcSampler:
    """Samples `pid` every `interval_s` on a thread until the process exits or `stop()`."""

    pid: int
    interval_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procstat", daemon=True)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                cpu_s, rss_mb = process_cpu_s(self.pid), process_rss_mb(self.pid)
                self.samples.append(Sample(time.monotonic(), cpu_s, rss_mb, *box_busy_s()))
            except (OSError, IndexError, ValueError):  # the process is gone
                return
            self._stop.wait(self.interval_s)

    def window(self, since_mono: float) -> dict[str, float | None]:
        """Mean CPU % of the process and of the box (100 = one core), peak and last RSS, after `since_mono`."""
        kept = [s for s in self.samples if s.t_mono >= since_mono]
        if len(kept) < 2:
            return {"cpu_percent": None, "box_cpu_percent": None, "rss_mb_peak": None, "rss_mb_last": None}
        first, last = kept[0], kept[-1]
        wall_s = last.t_mono - first.t_mono
        cores = os.cpu_count() or 1
        box = (last.box_busy_s - first.box_busy_s) / max(last.box_total_s - first.box_total_s, 1e-9) * 100 * cores
        return {
            "cpu_percent": round((last.cpu_s - first.cpu_s) / wall_s * 100, 1),
            "box_cpu_percent": round(box, 1),
            "rss_mb_peak": round(max(s.rss_mb for s in kept), 1),
            "rss_mb_last": round(last.rss_mb, 1),
        }
