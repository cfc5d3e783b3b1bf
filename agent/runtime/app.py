"""Wires the runtime: readers, detector, pipeline, outbox, MQTT link, status and health,
and, when configured, the OTA applier and the zone editor."""

from __future__ import annotations

import secrets
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import structlog
import yaml

from agent import __version__
from agent.io import sdnotify
from agent.io.audit import AuditLog, AuditLogError
from agent.settings.config import AgentConfig, ConfigError
from agent.runtime.live import LiveControl, open_detector, patched_config, served_setup, watched_classes
from agent.io.health import HealthLoop, build_health
from agent.io.metrics import ProcessUsage
from agent.io.mqtt import MqttLink
from agent.ota.applier import Applier
from agent.ota.control import Baseline, ModelRef
from agent.ota.report import DeviceIdentity, StepSettings
from agent.ota.slots import SlotLayout
from engines.atomic import write_atomic
from agent.ota.trust import TrustStore
from agent.ota.worker import OtaWorker
from agent.io.outbox import Outbox
from agent.runtime.pipeline import Pipeline, PipelineStats
from agent.wire.privacy import EnvelopeBuilder
from agent.io.prometheus import PrometheusServer
from agent.io.sources import CameraReader
from agent.wire.status import Health, ModelInfo, Status, to_bytes
from agent.wire.topics import Topics
from agent.io.zone_editor import ZoneEditor
from agent.settings.zones import ZonesDoc

__all__ = ["Agent", "watched_classes"]

log = structlog.get_logger(__name__)

DRAIN_ON_EXIT_S = 10.0
# counting kinds are statistics, not alerts: they are not written to the audit log
COUNTING_KINDS = frozenset({"line_count", "zone_occupancy", "aggregate"})


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Agent:
    """One running agent. `run` blocks until stopped, `duration_s`, or every camera ended.

    While running, `control` (a LiveControl) is the agent's AgentControl: the OTA applier
    and the zone editor change the model, zones and config through it.
    """

    def __init__(self, config: AgentConfig, zones: ZonesDoc) -> None:
        self.config = config
        self.boot_id = secrets.token_hex(8)
        self.topics = Topics(config.site, config.device_id)
        self.camera_states: dict[str, str] = {c.id: "new" for c in config.cameras}
        self.control: LiveControl | None = None
        self._file_zones = zones
        self._link: MqttLink | None = None
        self._pipeline: Pipeline | None = None
        self._audit: AuditLog | None = None
        self._ota_worker: OtaWorker | None = None
        self._lock = threading.Lock()

    @property
    def zones(self) -> ZonesDoc:
        """The zones in force: the live ones while running, else the config file's."""
        return self.control.zones if self.control else self._file_zones

    def status(self, state: str = "online") -> Status:
        model = self.control.model if self.control else None
        return Status(
            state=state,
            device_id=self.config.device_id,
            boot_id=self.boot_id,
            ts=now_ms(),
            agent_version=__version__,
            model=ModelInfo(name=model.manifest.name, sha256=model.sha256) if model else None,
            zones_version=self._pipeline.zones_version if self._pipeline else self.zones.version,
            cameras=dict(self.camera_states),
            audit_head=self._audit.head() if self._audit else None,
        )

    def audit(self, actor: str, action: str, **details: object) -> None:
        if self._audit is not None:
            self._audit.append(actor, action, **details)

    def publish_status(self) -> None:
        """Re-publish the retained status (kept for every reconnect)."""
        with self._lock:
            if self._link is not None:
                self._link.set_retained(self.topics.status, to_bytes(self.status()))

    def _on_camera_status(self, camera_id: str, state: str, detail: str) -> None:
        with self._lock:
            self.camera_states[camera_id] = state
        self.publish_status()

    def run(self, stop: threading.Event, duration_s: float | None = None) -> PipelineStats:
        """Raises ConfigError, before starting anything, if the OTA state cannot be read."""
        cfg = self.config
        layout = SlotLayout(cfg.state_dir / "ota") if cfg.ota is not None else None
        baseline = Baseline(ModelRef(cfg.model.manifest, cfg.models_dir), self._file_zones, {})
        model_ref, zones, patch = served_setup(layout, baseline)
        offline = Status(state="offline", device_id=cfg.device_id, boot_id=self.boot_id, ts=now_ms())
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        stopping = threading.Event()
        with ExitStack() as stack:
            self._audit = stack.enter_context(open_audit_log(cfg.state_dir / "audit.jsonl"))
            stack.callback(lambda: self.audit("agent", "stop"))
            outbox = stack.enter_context(Outbox(cfg.state_dir / "outbox.sqlite", cfg.outbox.max_bytes, cfg.outbox.max_age_s))
            link = MqttLink(
                cfg.broker, cfg.device_id, outbox, self.topics.status, to_bytes(offline), cfg.outbox.max_inflight,
                subscriptions=self._ota_topics() if layout else (), on_message=self._on_ota_message if layout else None,
            )  # fmt: skip
            readers = [CameraReader(c, self._on_camera_status) for c in cfg.cameras]
            watchdog = stack.enter_context(sdnotify.Watchdog(summary=self._summary))
            live_config = patched_config(cfg, patch)
            detector, live = open_detector(live_config, model_ref, zones)
            manifest = live.manifest
            self._pipeline = Pipeline(
                readers,
                detector,
                manifest.classes,
                manifest.class_map,
                zones,
                live_config.tracker,
                EnvelopeBuilder(cfg.device_id, self.boot_id, secrets.token_bytes(32), cfg.subject_rotation_s),
                self.topics,
                _AuditedSink(outbox, self),
                on_frame=watchdog.beat,
                aggregate_interval_s={cid: a.interval_s for cid, a in cfg.aggregates_only.items()},
            )
            # The live detector, whichever it is by then: a swap closes the ones before it.
            stack.callback(lambda: self._pipeline.detector.close())
            self.control = LiveControl(
                cfg, patch, live, zones, self._pipeline, self.audit, self.publish_status, layout, stopping
            )
            self.audit(
                "agent", "start", agent_version=__version__, boot_id=self.boot_id,
                model_sha256=live.sha256, zones_version=zones.version,
            )  # fmt: skip
            with self._lock:
                self._link = link
            self.publish_status()
            for reader in readers:
                stack.enter_context(reader)
            if layout is not None:
                # Before the link connects, so that no retained manifest arrives with nobody to take it.
                self._ota_worker = stack.enter_context(OtaWorker(self._applier(layout, baseline, link)))
            stack.enter_context(link)
            self._start_health(stack, outbox, link, readers)
            if cfg.zone_editor.enabled:
                stack.enter_context(self._zone_editor())
            sdnotify.ready()
            log.info("agent_started", device_id=cfg.device_id, cameras=len(readers), model=manifest.name)
            stats = self._pipeline.run(stop, duration_s)
            stopping.set()
            log.info("pipeline_stopped", frames=stats.frames, events=stats.events, errors=stats.errors)
            sdnotify.stopping()
            _drain(outbox, link, stop, DRAIN_ON_EXIT_S)
            with self._lock:
                self._link = None
            link.close(final_status=(self.topics.status, to_bytes(self.status("offline"))))
        return stats

    def _ota_topics(self) -> list[str]:
        """Update topics: this device's and its groups' (`edge/v1/{site}/groups/{group}/ota/{kind}`)."""
        groups = [f"edge/v1/{self.config.site}/groups/{g}/ota/+" for g in self.config.groups]
        return [f"{self.topics.root}/ota/+", *groups]

    def _on_ota_message(self, topic: str, payload: bytes) -> None:
        """On paho's thread: queue and return. The topic's kind is not trusted: the signed manifest says it."""
        if topic.endswith("/ota/status"):  # our own retained status matches `ota/+`
            return
        if self._ota_worker is not None:
            self._ota_worker.submit(payload)

    def _applier(self, layout: SlotLayout, baseline: Baseline, link: MqttLink) -> Applier:
        cfg = self.config
        ota = cfg.ota
        assert ota is not None and self.control is not None
        settings = StepSettings(
            golden_dir=ota.golden_dir,
            backend=cfg.model.backend,
            fps_floor=ota.fps_floor,
            health_window_s=ota.health_window_s,
            health_min_frames=ota.health_min_frames,
        )
        identity = DeviceIdentity(cfg.device_id, tuple(cfg.groups), __version__)
        return Applier(
            self.control, layout, TrustStore.from_file(ota.trust_file), identity, baseline, settings,
            report=lambda status: link.set_retained(self.topics.ota_status, status.to_bytes()),
        )  # fmt: skip

    def _zone_editor(self) -> ZoneEditor:
        assert self._pipeline is not None
        return ZoneEditor(
            snapshot=self._pipeline.latest_image,
            current_zones=lambda: self.zones,
            save_zones=self._save_edited_zones,
            camera_ids=lambda: [c.id for c in self.config.cameras],
            audit=lambda action, **details: self.audit("technician", action, **details),
            port=self.config.zone_editor.port,
        )

    def _save_edited_zones(self, zones: ZonesDoc) -> int:
        """The zone editor's save: check, write the zones file (atomically, durably), apply live."""
        control, path = self.control, self.config.zones_file
        assert control is not None and path is not None  # running, and the config requires a zones file
        if control.ota_serves_zones():
            raise ConfigError("the zones of this box are managed over the air: change them from the fleet")
        control.check_zones(zones)
        write_atomic(path, yaml.safe_dump(zones.model_dump(mode="json"), sort_keys=False).encode("utf-8"))
        control.swap_zones(zones, actor="technician")
        return zones.version

    def swap_zones(self, zones: ZonesDoc, actor: str) -> None:
        """Apply a checked zones document at the next frame boundary, audited and shown in status."""
        if self.control is None:
            raise RuntimeError("the agent is not running")
        self.control.swap_zones(zones, actor)

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
