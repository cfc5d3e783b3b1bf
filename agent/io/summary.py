"""The periodic one-line summary in the log: what a technician reading the journal needs
between start and stop (per camera state and fps, detector rate, events, outbox, broker).

It reads the same figures as `edge-agent status` (a snapshot dict, see
agent/runtime/figures.py) and turns two consecutive ones into rates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from agent.core.units import EARLIEST_REAL_TIME_S

log = structlog.get_logger(__name__)

Snapshot = Callable[[], dict[str, Any]]


def summary_fields(before: dict[str, Any], now: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """The summary's fields from two snapshots `elapsed_s` apart."""
    elapsed_s = max(elapsed_s, 1e-9)
    broker = now["broker"]
    outbox = now["outbox"]
    return {
        "cameras": {cid: f"{c['state']} {c['fps']:.1f} fps" for cid, c in now["cameras"].items()},
        "detect_fps": round((now["frames"] - before["frames"]) / elapsed_s, 1),
        "events": now["events"] - before["events"],
        "events_total": now["events"],
        "delivered_total": outbox["delivered"],
        "outbox_depth": outbox["depth"],
        "delivery_lag_s": outbox["oldest_age_s"],
        "broker": f"{broker['address']} " + ("connected" if broker["connected"] else "unreachable"),
    }


def warn_if_clock_unset(now_s: float) -> None:
    """A warning while the wall clock was never set: events carry its time, and TLS checks certificates by it."""
    if now_s < EARLIEST_REAL_TIME_S:
        log.warning(
            "clock_not_set", now=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now_s)),
            hint="events carry this time and TLS to the broker fails on it: enable time sync (timedatectl set-ntp "
            "true, or chrony) and let the box reach an NTP server; `edge-agent doctor` checks it",
        )  # fmt: skip


class SummaryLoop:
    """Logs `summary` every `interval_s` (0: never) from `snapshot()`, and `clock_not_set` beside it while the wall
    clock (`clock_s`) was never set; a failure is logged, never raised."""

    def __init__(self, snapshot: Snapshot, interval_s: float, clock_s: Callable[[], float] = time.time) -> None:
        self._snapshot, self._interval_s, self._clock_s = snapshot, interval_s, clock_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-summary", daemon=True)

    def __enter__(self) -> SummaryLoop:
        if self._interval_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        try:
            before, at = self._snapshot(), time.monotonic()
        except Exception:
            log.exception("summary_failed")
            return
        while not self._stop.wait(self._interval_s):
            try:
                now, now_at = self._snapshot(), time.monotonic()
                log.info("summary", **summary_fields(before, now, now_at - at))
                warn_if_clock_unset(self._clock_s())
                before, at = now, now_at
            except Exception:
                log.exception("summary_failed")
