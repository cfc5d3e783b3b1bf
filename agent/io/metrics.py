"""Per-stage latency windows and process resource figures (for health and benchmarks)."""

from __future__ import annotations

import os
import resource
import threading
import time
from collections import deque

import numpy as np

STAGES = ("preprocess", "inference", "postprocess", "tracking", "rules", "publish")


class StageTimer:
    """Keeps the last `window` durations of each stage; thread-safe snapshots."""

    def __init__(self, window: int = 2000) -> None:
        self._samples: dict[str, deque[float]] = {s: deque(maxlen=window) for s in STAGES}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples[stage].append(seconds)

    def percentiles_ms(self) -> dict[str, dict[str, float]]:
        """Per stage p50/p95/p99/max in milliseconds over the window."""
        with self._lock:
            snap = {s: np.asarray(v, dtype=np.float64) for s, v in self._samples.items() if v}
        return {
            s: {k: round(float(x) * 1000, 3) for k, x in zip(("p50", "p95", "p99"), np.percentile(a, [50, 95, 99]))}
            | {"max": round(float(a.max()) * 1000, 3)}
            for s, a in snap.items()
        }


class ProcessUsage:
    """CPU percent since the last call and resident memory, read from the OS."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), time.process_time())

    def sample(self) -> dict[str, float]:
        now, cpu = time.monotonic(), time.process_time()
        wall = max(now - self._last[0], 1e-9)
        pct = 100.0 * (cpu - self._last[1]) / wall
        self._last = (now, cpu)
        return {"cpu_percent": round(pct, 1), "rss_mb": round(rss_bytes() / 2**20, 1)}


def rss_bytes() -> int:
    """Current resident set size (falls back to the peak where /proc is absent)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
