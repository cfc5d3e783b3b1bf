"""The running agent's figures of the moment, as one JSON-able dict: what `edge-agent
status` shows (through agent/io/status_socket.py) and what the periodic log summary
(agent/io/summary.py) turns into rates. Also the start-up summary and the final one."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import __version__
from agent.io.mqtt import MqttLink
from agent.io.outbox import EventRow, EventSink, Outbox
from agent.io.sources import CameraReader
from agent.runtime.live import LiveControl
from agent.runtime.pipeline import Pipeline
from agent.settings.config import AgentConfig
from agent.settings.zones import ZonesDoc


class CountingSink:
    """A sink that also counts the events it passes, per camera, kind and zone or line."""

    def __init__(self, inner: EventSink) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def put(self, items: list[EventRow]) -> None:
        self._inner.put(items)
        keys = []
        for _, topic, payload in items:
            envelope = json.loads(payload)
            body = envelope.get("body", {})
            area = body.get("zone_id") or body.get("line_id") or ""
            keys.append((envelope.get("camera_id", ""), topic.rsplit("/", 1)[1], area))
        with self._lock:
            self._counts.update(keys)

    def counts(self) -> tuple[int, list[dict[str, Any]]]:
        """The events passed so far and their split by camera, kind and area, read together (consistent)."""
        with self._lock:
            items = sorted(self._counts.items())
        return sum(n for _, n in items), [{"camera": c, "kind": k, "area": a, "events": n} for (c, k, a), n in items]


class LiveFigures:
    """`snapshot()` reads every part of the running agent; safe from any thread."""

    def __init__(
        self,
        config: AgentConfig,
        config_path: Path | None,
        boot_id: str,
        readers: list[CameraReader],
        pipeline: Pipeline,
        outbox: Outbox,
        link: MqttLink,
        sink: CountingSink,
        model: Callable[[], dict[str, Any]],
        zones: Callable[[], ZonesDoc],
        extras: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        """`model()`: name, backend, precision, sha256 of the model serving now; `extras()`:
        more top-level entries (the last OTA status, the zone editor)."""
        self._config, self._config_path, self._boot_id = config, config_path, boot_id
        self._readers, self._pipeline, self._outbox, self._link, self._sink = readers, pipeline, outbox, link, sink
        self._model, self._zones, self._extras = model, zones, extras
        self._started = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        stats, outbox, link = self._pipeline.stats, self._outbox.stats(), self._link
        events, rules = self._sink.counts()
        return {
            "device_id": self._config.device_id,
            "boot_id": self._boot_id,
            "agent_version": __version__,
            "ts_ms": time.time_ns() // 1_000_000,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "config": str(self._config_path) if self._config_path else None,
            "broker": {
                "address": link.address,
                "tls": self._config.broker.tls is not None,
                "connected": link.connected.is_set(),
                "reconnects": link.reconnects,
                "last_error": link.last_error,
            },
            "model": self._model(),
            "zones_version": self._zones().version,
            "cameras": {
                s.camera_id: {
                    "state": s.state,
                    "fps": round(s.fps, 2),
                    "frames": s.frames_read,
                    "dropped": s.frames_dropped,
                    "reconnects": s.reconnects,
                }
                for s in (r.stats() for r in self._readers)
            },
            "frames": stats.frames,
            # what reached the outbox, with its split by rule: the pipeline's own count runs ahead by the
            # events still waiting for the outbox's writer (agent/io/write_behind.py)
            "events": events,
            "errors": stats.errors,
            "rules": rules,
            "outbox": {
                "depth": outbox.depth,
                "oldest_age_s": round(outbox.oldest_age_s, 1),
                "dropped": outbox.dropped,
                "delivered": link.delivered,
            },
        } | self._extras()


def model_figures(control: LiveControl) -> dict[str, Any]:
    """The model serving now: name, backend, precision and file hash."""
    model = control.model
    return {
        "name": model.manifest.name,
        "backend": control.config.model.backend,
        "precision": model.manifest.precision,
        "sha256": model.sha256,
    }


def startup_fields(
    config: AgentConfig, config_path: Path | None, zones: ZonesDoc, model: dict[str, Any]
) -> dict[str, Any]:
    """What the start-up log line says: which config, broker, cameras, zones and model."""
    return {
        "config": str(config_path) if config_path else None,
        "device_id": config.device_id,
        "broker": f"{config.broker.host}:{config.broker.port}" + (" (TLS)" if config.broker.tls else ""),
        "cameras": {c.id: c.redacted_url for c in config.cameras},
        "zones_file": str(config.zones_file) if config.zones_file else None,
        "zones_version": zones.version,
        "model": model["name"],
        "backend": model["backend"],
        "precision": model["precision"],
        "state_dir": str(config.state_dir),
    }
