"""Wires the runtime: readers, detector, pipeline, outbox, MQTT link, status and health,
and, when configured, the OTA applier and the zone editor."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import structlog

from agent import __version__
from agent.io import sdnotify
from agent.io.audit import DAMAGED_ACTION, AuditLog, AuditLogError
from agent.io.health import DiskWatch, HealthLoop, build_health
from agent.io.ledger import LossLedger
from agent.io.logs import Sparse
from agent.io.metrics import ProcessUsage
from agent.io.mqtt import BROKER_WARNING_EVERY_S, MqttLink
from agent.io.outbox import EventRow, Outbox, OutboxDamaged
from agent.io.port_retry import PortRetry
from agent.io.prometheus import HOST as PROMETHEUS_HOST
from agent.io.prometheus import PrometheusServer
from agent.io.sources import CameraReader
from agent.io.state_lock import state_dir_lock
from agent.io.status_socket import SOCKET_NAME, StatusSocket
from agent.io.summary import SummaryLoop, warn_if_clock_unset
from agent.io.write_behind import WriteBehind
from agent.io.zone_editor import ZONE_EDITOR_TOKEN_FILE, ZoneEditor
from agent.ota.applier import Applier
from agent.ota.canonical import canonical_json_bytes
from agent.ota.control import Baseline, ModelRef
from agent.ota.report import DeviceIdentity, OtaStatus, StepSettings
from agent.ota.slots import SlotLayout
from agent.ota.worker import OtaWorker
from agent.runtime.figures import (
    CountingSink,
    LiveFigures,
    model_figures,
    startup_fields,
)
from agent.runtime.live import LiveControl, served_setup, watched_classes
from agent.runtime.pipeline import Pipeline, PipelineStats
from agent.settings.config import AgentConfig, OutboxSettings
from agent.settings.trust import TrustStore
from agent.settings.zones import ZonesDoc
from agent.wire.privacy import EnvelopeBuilder
from agent.wire.status import Health, ModelInfo, Status, to_bytes
from agent.wire.topics import Topics

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

    def __init__(self, config: AgentConfig, zones: ZonesDoc, config_path: Path | None = None) -> None:
        self.config = config
        # shown in the start-up summary and `edge-agent status`
        self.config_path = config_path.absolute() if config_path is not None else None
        self.final: dict[str, int] = {}  # after `run`: frames, events produced, delivered, still queued
        self.last_ota: dict | None = None  # the last OTA status reported
        self._editor: PortRetry[ZoneEditor] | None = None
        self.boot_id = secrets.token_hex(8)
        self.topics = Topics(config.site, config.device_id)
        self.camera_states: dict[str, str] = {c.id: "new" for c in config.cameras}
        self.control: LiveControl | None = None
        self._file_zones = zones
        self._sparse = Sparse(log)  # a full disk fails every audit record: said every few seconds, not each time
        self._link: MqttLink | None = None
        self._pipeline: Pipeline | None = None
        self._audit: AuditLog | None = None
        self._ota_worker: OtaWorker | None = None
        self._lock = threading.Lock()
        self.crash_announced = False  # after a crash: whether the broker got `offline`, reason `crashed`

    @property
    def zones(self) -> ZonesDoc:
        """The zones in force: the live ones while running, else the config file's."""
        return self.control.zones if self.control else self._file_zones

    def status(self, state: str = "online", reason: str | None = None) -> Status:
        model = self.control.model if self.control else None
        return Status(
            state=state,
            reason=reason,
            device_id=self.config.device_id,
            boot_id=self.boot_id,
            ts=now_ms(),
            agent_version=__version__,
            model=ModelInfo(name=model.manifest.name, sha256=model.sha256) if model else None,
            zones_version=self.zones.version,
            zones_sha256=hashlib.sha256(canonical_json_bytes(self.zones.model_dump(mode="json"))).hexdigest(),
            # an agent going offline reads no camera: their last states would read as still true
            cameras=dict(self.camera_states) if state == "online" else dict.fromkeys(self.camera_states, "stopped"),
            audit_head=self._audit.head() if self._audit else None,
        )

    def audit(self, actor: str, action: str, **details: object) -> bool:
        """Record in the audit log; False if the record could not be written (a full disk:
        the log counts it and notes the gap once a record fits again). Never raises for it."""
        if self._audit is None:
            return True
        try:
            self._audit.append(actor, action, **details)
        except OSError as e:
            self._sparse("warning", "audit_record_lost", action=action, error=e.strerror or str(e))
            return False
        return True

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
        """Raises, before starting anything, StateDirUnavailable if another agent runs on the state folder or
        it cannot be opened, and ConfigError if the OTA state cannot be read."""
        with state_dir_lock(self.config.state_dir):
            return self._run(stop, duration_s)

    def _run(self, stop: threading.Event, duration_s: float | None) -> PipelineStats:
        cfg = self.config
        layout = SlotLayout(cfg.state_dir / "ota") if cfg.ota is not None else None
        baseline = Baseline(ModelRef(cfg.model.manifest, cfg.models_dir), self._file_zones, {})
        served = served_setup(layout, baseline)
        if not served.zones.zones and not served.zones.lines:  # an empty or cut-short zones file: nothing to watch
            log.warning("no_zones", zones_file=str(cfg.zones_file), hint="no rule runs on any camera: give the "
                        "zones file its zones and lines, by hand or in the zone editor (zone_editor.enabled)")  # fmt: skip
        offline = Status(state="offline", reason="lost", device_id=cfg.device_id, boot_id=self.boot_id, ts=now_ms(),
                         cameras=dict.fromkeys((c.id for c in cfg.cameras), "stopped"))  # fmt: skip
        stopping = threading.Event()
        with ExitStack() as stack:
            ledger = LossLedger(cfg.state_dir / "losses.json")
            self._audit = stack.enter_context(open_audit_log(cfg.state_dir / "audit.jsonl", ledger))
            stack.callback(lambda: self.audit("agent", "stop"))
            outbox = stack.enter_context(open_outbox(cfg.state_dir / "outbox.sqlite", cfg.outbox, ledger, self.audit))
            link = MqttLink(
                cfg.broker, cfg.device_id, outbox, self.topics.status, to_bytes(offline), cfg.outbox.max_inflight,
                subscriptions=self._ota_topics() if layout else (), on_message=self._on_ota_message if layout else None,
                warn_every_s=cfg.health.log_interval_s or BROKER_WARNING_EVERY_S,
            )  # fmt: skip
            readers = [CameraReader(c, self._on_camera_status) for c in cfg.cameras]
            watchdog = stack.enter_context(sdnotify.Watchdog(summary=self._summary))
            sink = CountingSink(_AuditedSink(outbox, self))
            # the analytics thread hands its events over and goes on: the outbox's commits never hold its frames
            events_out = stack.enter_context(WriteBehind(sink))
            envelopes = EnvelopeBuilder(cfg.device_id, self.boot_id, secrets.token_bytes(32), cfg.subject_rotation_s)

            # LiveControl opens the detector and fills in the setup (detector, classes, class map, zones, tracker).
            make_pipeline = partial(
                Pipeline, readers, envelopes=envelopes, topics=self.topics, sink=events_out,
                on_frame=lambda frames: watchdog.beat(), on_idle=watchdog.beat,  # waiting for cameras is not hung
                aggregate_interval_s={cid: a.interval_s for cid, a in cfg.aggregates_only.items()},
            )  # fmt: skip
            self.control = LiveControl(
                cfg, served, self._file_zones, make_pipeline, self.audit, self.publish_status, layout, stopping
            )
            self._pipeline = self.control.pipeline
            stack.callback(self.control.close)  # the live detector, whichever it is by then
            zones = self.control.zones
            self.audit(
                "agent", "start", agent_version=__version__, boot_id=self.boot_id,
                model_sha256=self.control.model.sha256, zones_version=zones.version,
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
            stack.push(lambda exc_type, _exc, _tb: self._announce_crash(link, exc_type))
            self._start_health(stack, outbox, link, readers, DiskWatch(cfg.state_dir, ledger))
            if cfg.zone_editor.enabled:
                self._editor = stack.enter_context(PortRetry(
                    "zone_editor", f"127.0.0.1:{cfg.zone_editor.port}", "zone_editor.port", self._zone_editor
                ))  # fmt: skip
            figures = LiveFigures(
                cfg, self.config_path, self.boot_id, readers, self._pipeline, outbox, link, sink,
                model=lambda: model_figures(self.control), zones=lambda: self.zones, extras=self._figure_extras,
            )  # fmt: skip
            stack.enter_context(StatusSocket(cfg.state_dir / SOCKET_NAME, figures.snapshot))
            stack.enter_context(SummaryLoop(figures.snapshot, cfg.health.log_interval_s))
            sdnotify.ready()
            log.info("agent_started", **startup_fields(cfg, self.config_path, zones, model_figures(self.control)))
            warn_if_clock_unset(time.time())
            stats = self._pipeline.run(stop, duration_s)
            events_out.close()  # every event handed over is in the outbox before it drains
            stopping.set()
            log.info("pipeline_stopped", frames=stats.frames, events=stats.events, errors=stats.errors)
            sdnotify.stopping()
            _drain(outbox, link, stop, DRAIN_ON_EXIT_S)
            with self._lock:
                self._link = None
            link.close(final_status=(self.topics.status, to_bytes(self.status("offline", "stopped"))))
            queued = outbox.stats().depth
            self.final = {"frames": stats.frames, "produced": stats.events, "delivered": link.delivered, "queued": queued}
            # queued events are durable and go out at the next start: a warning, not a failure
            (log.warning if queued else log.info)("agent_stopped", broker=link.address, **self.final)
        return stats

    def _figure_extras(self) -> dict:
        """For `edge-agent status`: the last OTA report and the zone editor's address (or why its port is unavailable)."""
        editor = None
        if self._editor is not None:
            serving = self._editor.server
            editor = {"url": serving.url} if serving is not None else {"unavailable": self._editor.unavailable}
        return {"ota": self.last_ota, "zone_editor": editor}

    def _announce_crash(self, link: MqttLink, exc_type: type[BaseException] | None) -> bool:
        """When an error ends `run`: the retained status says `offline`, reason `crashed`,
        or, if that cannot reach the broker, the broker is asked to publish the last will."""
        if exc_type is not None:
            with self._lock:
                self._link = None
            final = (self.topics.status, to_bytes(self.status("offline", "crashed")))
            self.crash_announced = link.close(final_status=final, crashed=True)
        return False  # the error goes on up

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
            report=lambda status: self._report_ota(link, status),
        )  # fmt: skip

    def _report_ota(self, link: MqttLink, status: OtaStatus) -> None:
        self.last_ota = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        link.set_retained(self.topics.ota_status, status.to_bytes())

    def _zone_editor(self) -> ZoneEditor:
        assert self._pipeline is not None and self.control is not None
        return ZoneEditor(
            snapshot=self._pipeline.latest_image,
            current_zones=lambda: self.zones,
            save_zones=self.control.save_edited_zones,
            camera_ids=lambda: [c.id for c in self.config.cameras],
            audit=lambda action, **details: self.audit("technician", action, **details),
            live=self._pipeline.live_view.view,
            token_file=self.config.state_dir / ZONE_EDITOR_TOKEN_FILE,
            port=self.config.zone_editor.port,
        )

    def _start_health(
        self, stack: ExitStack, outbox: Outbox, link: MqttLink, readers: list[CameraReader], disk: DiskWatch
    ) -> None:
        """The periodic health message and, if configured, the same figures for Prometheus."""
        usage = ProcessUsage()

        def snapshot() -> Health:
            stages = self._pipeline.timer.percentiles_ms() if self._pipeline else {}
            return build_health(
                self.config.device_id, self.boot_id, [r.stats() for r in readers], stages,
                outbox.stats(), link.reconnects, usage.sample(), disk.check(),
                self._pipeline.detect_fps() if self._pipeline else None,
                detect_errors=self._pipeline.stats.errors if self._pipeline else 0, mqtt_rejected=link.rejected,
                ota_refused=self._ota_worker.refused if self._ota_worker else 0,
            )  # fmt: skip

        def publish(health: Health) -> None:
            link.publish_now(self.topics.health, to_bytes(health))

        health = stack.enter_context(HealthLoop(snapshot, publish, self.config.health.interval_s))
        if self.config.health.prometheus_port is not None:
            port = self.config.health.prometheus_port
            stack.enter_context(PortRetry(
                "prometheus", f"{PROMETHEUS_HOST}:{port}", "health.prometheus_port",
                lambda: PrometheusServer(port, lambda: health.latest),
            ))  # fmt: skip

    def _summary(self) -> str:
        online = sum(1 for s in self.camera_states.values() if s == "online")
        frames = self._pipeline.stats.frames if self._pipeline else 0
        return f"{online}/{len(self.camera_states)} cameras online, {frames} frames"


class _AuditedSink:
    """The outbox, with every alert (not the counting events) also written to the audit log."""

    def __init__(self, outbox: Outbox, agent: Agent) -> None:
        self._outbox, self._agent = outbox, agent

    def put(self, items: list[EventRow]) -> None:
        self._outbox.put(items)
        for event_id, topic, _ in items:
            kind = topic.rsplit("/", 1)[1]
            if kind not in COUNTING_KINDS:
                self._agent.audit("rules", "alert", kind=kind, event_id=event_id)


def open_audit_log(path: Path, ledger: LossLedger) -> AuditLog:
    """Open the audit log; a damaged one (a power cut mid-write, or tampering) is set
    aside, never appended to, and the new chain starts by saying so (with a full disk,
    its first record after the gap says so)."""
    try:
        return AuditLog(path, ledger)
    except AuditLogError as e:
        aside = _set_aside(path)
        log.error("audit_log_damaged", problem=str(e), moved_to=str(aside))
        audit = AuditLog(path, ledger)
        try:
            audit.append("agent", DAMAGED_ACTION, problem=str(e), moved_to=aside.name)
        except OSError:
            pass  # counted by the ledger: the gap record names it
        return audit


def open_outbox(path: Path, settings: OutboxSettings, ledger: LossLedger, audit: Callable[..., bool]) -> Outbox:
    """Open the outbox; a damaged one (a power cut on storage that lied about its writes) is set aside with
    its WAL, for a technician to recover what it held (`sqlite3 FILE .recover`), and a new one starts: the
    box goes on sending what it sees now rather than stopping on what it could not keep."""
    try:
        return Outbox(path, settings.max_bytes, settings.max_age_s, ledger=ledger)
    except OutboxDamaged as e:
        aside = _set_aside(path)
        for suffix in ("-wal", "-shm"):  # its WAL goes with it: part of what it held, never the new file's
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        log.error("outbox_damaged", problem=str(e), moved_to=str(aside), hint="its queued events are not sent; "
                  "recover them from the file set aside (sqlite3 FILE .recover)")  # fmt: skip
        audit("agent", "outbox_damaged", problem=str(e), moved_to=aside.name)
        return Outbox(path, settings.max_bytes, settings.max_age_s, ledger=ledger)


def _set_aside(path: Path) -> Path:
    """Rename a damaged file out of the way, kept beside it with the time it was found; returns the new path."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    path.rename(aside)
    return aside


def _drain(outbox: Outbox, link: MqttLink, stop: threading.Event, timeout_s: float) -> None:
    """Give queued events a moment to reach the broker before a clean exit (they stay durable anyway)."""
    deadline = time.monotonic() + timeout_s
    while outbox.stats().depth and link.connected.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
