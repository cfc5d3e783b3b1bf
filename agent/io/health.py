"""The periodic health message: built from every part's figures, published on
`.../health` and kept for the Prometheus endpoint, so both show the same numbers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from agent.io.ledger import LossLedger
from agent.io.outbox import LOW_DISK_BYTES, OutboxStats
from agent.io.sources import ReaderStats
from agent.wire.status import CameraHealth, DiskHealth, Health, OutboxHealth, StageLatency

log = structlog.get_logger(__name__)


def build_health(
    device_id: str,
    boot_id: str,
    cameras: list[ReaderStats],
    stages_ms: dict[str, dict[str, float]],
    outbox: OutboxStats,
    mqtt_reconnects: int,
    usage: dict[str, float],
    disk: DiskHealth | None = None,
    detect_fps: dict[str, float] | None = None,
    *,
    detect_errors: int,
    mqtt_rejected: int,
    ota_refused: int,
) -> Health:
    """One health message; `stages_ms` as StageTimer.percentiles_ms(), `usage` as ProcessUsage.sample(),
    `detect_fps` as Pipeline.detect_fps(); the counts since start: failed detect batches
    (PipelineStats.errors), events the broker refused (MqttLink.rejected) and update messages
    refused (OtaWorker.refused)."""
    detect_fps = detect_fps or {}
    return Health(
        device_id=device_id,
        boot_id=boot_id,
        ts=time.time_ns() // 1_000_000,
        cameras={
            s.camera_id: CameraHealth(
                state=s.state, fps=round(s.fps, 2), frames=s.frames_read, dropped=s.frames_dropped, reconnects=s.reconnects,
                detect_fps=round(detect_fps[s.camera_id], 2) if s.camera_id in detect_fps else None,
            )
            for s in cameras
        },
        stages_ms={k: StageLatency(**v) for k, v in stages_ms.items()},
        outbox=OutboxHealth(
            depth=outbox.depth,
            size_bytes=outbox.size_bytes,
            oldest_age_s=round(outbox.oldest_age_s, 3),
            dropped=outbox.dropped,
        ),
        disk=disk,
        mqtt_reconnects=mqtt_reconnects,
        detect_errors=detect_errors,
        mqtt_rejected=mqtt_rejected,
        ota_refused=ota_refused,
        **usage,
    )


class DiskWatch:
    """The state disk's health: full when nearly out of space (where the outbox starts shedding)
    or when something was lost since the last look; a warning when it turns full, a note when
    it recovers."""

    def __init__(self, folder: Path, ledger: LossLedger) -> None:
        self._folder, self._ledger = folder, ledger
        self._lost = (ledger.events_lost, ledger.audit_lost)
        self._full = False

    def check(self) -> DiskHealth:
        disk = os.statvfs(self._folder)
        free = disk.f_bavail * disk.f_frsize
        lost = (self._ledger.events_lost, self._ledger.audit_lost)
        full = free < LOW_DISK_BYTES or lost != self._lost
        if full != self._full:
            if full:
                log.warning(
                    "disk_full", folder=str(self._folder), free_bytes=free, events_lost=lost[0], audit_lost=lost[1],
                    hint="free space on that folder's filesystem (old logs, core dumps); meanwhile the oldest queued "
                    "events are dropped and what cannot be written is counted in losses.json",
                )  # fmt: skip
            else:
                log.info("disk_ok", folder=str(self._folder), free_bytes=free)
        self._full, self._lost = full, lost
        return DiskHealth(full=full, free_bytes=free, events_lost=lost[0], audit_records_lost=lost[1])


class HealthLoop:
    """Every `interval_s`: take a snapshot, keep it as `latest`, hand it to `publish`.

    A failure in either is logged and the loop goes on: health must never take
    the agent down.
    """

    def __init__(self, snapshot: Callable[[], Health], publish: Callable[[Health], None], interval_s: float) -> None:
        self._snapshot, self._publish, self._interval_s = snapshot, publish, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self.latest: Health | None = None

    def __enter__(self) -> HealthLoop:
        self._tick(publish=False)  # the first figures exist as soon as the agent runs
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._tick(publish=True)

    def _tick(self, publish: bool) -> None:
        try:
            self.latest = self._snapshot()
            if publish:
                self._publish(self.latest)
        except Exception:
            log.exception("health_failed")
