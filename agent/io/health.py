"""The periodic health message: built from every part's figures, published on
`.../health` and kept for the Prometheus endpoint, so both show the same numbers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from agent.io.outbox import OutboxStats
from agent.io.sources import ReaderStats
from agent.wire.status import CameraHealth, Health, OutboxHealth, StageLatency

log = structlog.get_logger(__name__)


def build_health(
    device_id: str,
    boot_id: str,
    cameras: list[ReaderStats],
    stages_ms: dict[str, dict[str, float]],
    outbox: OutboxStats,
    mqtt_reconnects: int,
    usage: dict[str, float],
) -> Health:
    """One health message; `stages_ms` as StageTimer.percentiles_ms(), `usage` as ProcessUsage.sample()."""
    return Health(
        device_id=device_id,
        boot_id=boot_id,
        ts=time.time_ns() // 1_000_000,
        cameras={
            s.camera_id: CameraHealth(
                state=s.state, fps=round(s.fps, 2), frames=s.frames_read, dropped=s.frames_dropped, reconnects=s.reconnects
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
        mqtt_reconnects=mqtt_reconnects,
        **usage,
    )


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
