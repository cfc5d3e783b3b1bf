"""Wires the runtime: readers, detector, pipeline, outbox, MQTT link, status and health."""

from __future__ import annotations

import secrets
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import structlog

from agent import __version__, sdnotify
from agent.audit import AuditLog, AuditLogError
from agent.config import AgentConfig
from agent.health import HealthLoop, build_health
from agent.metrics import ProcessUsage
from agent.mqtt import MqttLink
from agent.outbox import Outbox
from agent.pipeline import Pipeline, PipelineStats
from agent.privacy import EnvelopeBuilder
from agent.prometheus import PrometheusServer
from agent.sources import CameraReader
from agent.status import Health, ModelInfo, Status, to_bytes
from agent.topics import Topics
from agent.zones import ZonesDoc
from engines.detector import Detector
from engines.manifest import load_manifest

log = structlog.get_logger(__name__)

DRAIN_ON_EXIT_S = 10.0
# counting kinds are statistics, not alerts: they are not written to the audit log
COUNTING_KINDS = frozenset({"line_count", "zone_occupancy", "aggregate"})


def watched_classes(zones: ZonesDoc, class_names: list[str], class_map: dict[str, str]) -> list[str]:
    """Model classes that any zone or line watches, directly or through the class map."""
    wanted = {c for item in [*zones.zones, *zones.lines] for c in item.classes}
    return [n for n in class_names if n in wanted or class_map.get(n) in wanted]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Agent:
    """One running agent. `run` blocks until stopped, `duration_s`, or every camera ended."""

    def __init__(self, config: AgentConfig, zones: ZonesDoc) -> None:
        self.config = config
        self.zones = zones
        self.boot_id = secrets.token_hex(8)
        self.topics = Topics(config.site, config.device_id)
        self.camera_states: dict[str, str] = {c.id: "new" for c in config.cameras}
        self._link: MqttLink | None = None
        self._pipeline: Pipeline | None = None
        self._model: ModelInfo | None = None
        self._audit: AuditLog | None = None
        self._lock = threading.Lock()

    def status(self, state: str = "online") -> Status:
        return Status(
            state=state,
            device_id=self.config.device_id,
            boot_id=self.boot_id,
            ts=now_ms(),
            agent_version=__version__,
            model=self._model,
            zones_version=self._pipeline.zones_version if self._pipeline else self.zones.version,
            cameras=dict(self.camera_states),
            audit_head=self._audit.head() if self._audit else None,
        )

    def audit(self, actor: str, action: str, **details: object) -> None:
        if self._audit is not None:
            self._audit.append(actor, action, **details)

    def _on_camera_status(self, camera_id: str, state: str, detail: str) -> None:
        with self._lock:
            self.camera_states[camera_id] = state
            if self._link is not None:
                self._link.set_retained(self.topics.status, to_bytes(self.status()))

    def run(self, stop: threading.Event, duration_s: float | None = None) -> PipelineStats:
        cfg = self.config
        manifest = load_manifest(cfg.model.manifest)
        detect_classes = cfg.model.classes or watched_classes(self.zones, manifest.classes, manifest.class_map)
        offline = Status(state="offline", device_id=cfg.device_id, boot_id=self.boot_id, ts=now_ms())
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            self._audit = stack.enter_context(open_audit_log(cfg.state_dir / "audit.jsonl"))
            stack.callback(lambda: self.audit("agent", "stop"))
            outbox = stack.enter_context(Outbox(cfg.state_dir / "outbox.sqlite", cfg.outbox.max_bytes, cfg.outbox.max_age_s))
            link = stack.enter_context(
                MqttLink(cfg.broker, cfg.device_id, outbox, self.topics.status, to_bytes(offline), cfg.outbox.max_inflight)
            )
            detector = stack.enter_context(
                Detector.open(
                    cfg.model.manifest,
                    cfg.models_dir,
                    backend=cfg.model.backend,
                    confidence=cfg.model.confidence,
                    nms_iou=cfg.model.nms_iou,
                    class_names=detect_classes or None,
                )
            )
            self._model = ModelInfo(name=manifest.name, sha256=detector.model_sha256)
            self.audit(
                "agent", "start", agent_version=__version__, boot_id=self.boot_id,
                model_sha256=detector.model_sha256, zones_version=self.zones.version,
            )
            readers = [CameraReader(c, self._on_camera_status) for c in cfg.cameras]
            watchdog = stack.enter_context(sdnotify.Watchdog(summary=self._summary))
            self._pipeline = Pipeline(
                readers,
                detector,
                manifest.classes,
                manifest.class_map,
                self.zones,
                cfg.tracker,
                EnvelopeBuilder(cfg.device_id, self.boot_id, secrets.token_bytes(32), cfg.subject_rotation_s),
                self.topics,
                _AuditedSink(outbox, self),
                on_frame=watchdog.beat,
                aggregate_interval_s={cid: a.interval_s for cid, a in cfg.aggregates_only.items()},
            )
            with self._lock:
                self._link = link
                link.set_retained(self.topics.status, to_bytes(self.status()))
            for reader in readers:
                stack.enter_context(reader)
            self._start_health(stack, outbox, link, readers)
            sdnotify.ready()
            log.info("agent_started", device_id=cfg.device_id, cameras=len(readers), model=manifest.name)
            stats = self._pipeline.run(stop, duration_s)
            log.info("pipeline_stopped", frames=stats.frames, events=stats.events)
            sdnotify.stopping()
            _drain(outbox, link, stop, DRAIN_ON_EXIT_S)
            with self._lock:
                self._link = None
            link.close(final_status=(self.topics.status, to_bytes(self.status("offline"))))
        return stats

    def _start_health(self, stack: ExitStack, outbox: Outbox, link: MqttLink, readers: list[CameraReader]) -> None:
        """The periodic health message and, if configured, the same figures for Prometheus."""
        usage = ProcessUsage()

        def snapshot() -> Health:
            stages = self._pipeline.timer.percentiles_ms() if self._pipeline else {}
            return build_health(
                self.config.device_id, self.boot_id, [r.stats() for r in readers], stages,
                outbox.stats(), link.reconnects, usage.sample(),
            )  # fmt: skip

        def publish(health: Health) -> None:
            link.publish_now(self.topics.health, to_bytes(health))

        health = stack.enter_context(HealthLoop(snapshot, publish, self.config.health.interval_s))
        if self.config.health.prometheus_port is not None:
            stack.enter_context(PrometheusServer(self.config.health.prometheus_port, lambda: health.latest))

    def swap_zones(self, zones: ZonesDoc, actor: str) -> None:
        """Apply a validated zones document at the next frame boundary, audited and shown in status."""
        if self._pipeline is None:
            raise RuntimeError("the agent is not running")
        old = self._pipeline.zones_version
        self._pipeline.swap_zones(zones)
        self.zones = zones
        self.audit(actor, "zones_change", old_version=old, new_version=zones.version)

    def _summary(self) -> str:
        online = sum(1 for s in self.camera_states.values() if s == "online")
        frames = self._pipeline.stats.frames if self._pipeline else 0
        return f"{online}/{len(self.camera_states)} cameras online, {frames} frames"


class _AuditedSink:
    """The outbox, with every alert (not the counting events) also written to the audit log."""

    def __init__(self, outbox: Outbox, agent: Agent) -> None:
        self._outbox, self._agent = outbox, agent

    def put(self, items: list[tuple[str, str, bytes]]) -> None:
        self._outbox.put(items)
        for event_id, topic, _ in items:
            kind = topic.rsplit("/", 1)[1]
            if kind not in COUNTING_KINDS:
                self._agent.audit("rules", "alert", kind=kind, event_id=event_id)


def open_audit_log(path: Path) -> AuditLog:
    """Open the audit log; a damaged one (a power cut mid-write, or tampering) is set
    aside, never appended to, and the new chain starts by saying so."""
    try:
        return AuditLog(path)
    except AuditLogError as e:
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        path.rename(aside)
        log.error("audit_log_damaged", problem=str(e), moved_to=str(aside))
        audit = AuditLog(path)
        audit.append("agent", "audit_log_damaged", problem=str(e), moved_to=aside.name)
        return audit


def _drain(outbox: Outbox, link: MqttLink, stop: threading.Event, timeout_s: float) -> None:
    """Give queued events a moment to reach the broker before a clean exit (they stay durable anyway)."""
    deadline = time.monotonic() + timeout_s
    while outbox.stats().depth and link.connected.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
