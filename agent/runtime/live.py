"""The one owner of what is live: model, zones and config, swapped at a frame boundary.

`LiveControl` is the agent's `AgentControl` (agent/ota/control.py): the OTA
applier drives it from its worker thread, and the zone editor saves through
`save_edited_zones` from its HTTP thread. Every change waits until the frame loop has
installed it (so "returned" means "live"), is written to the audit log with
its old and new versions, and re-publishes the retained status. Changes are
serialised: each one is built on the state the previous one left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog
import yaml

from agent.io.state_lock import WRITABLE_FOLDER_ADVICE
from agent.ota.control import Baseline, HealthSample, ModelRef
from agent.ota.errors import OtaError
from agent.ota.slots import (
    SlotLayout,
    committed_zones,
    served_config_patch,
    served_model,
    served_zones,
)
from agent.runtime.pipeline import FrameDetector, Pipeline
from agent.settings.config import AgentConfig, ConfigError, check_zones
from agent.settings.patch import check_live_keys, patched_config
from agent.settings.zones import ZonesDoc
from engines.atomic import write_atomic
from engines.detector import Detector
from engines.manifest import ModelManifest, load_manifest

log = structlog.get_logger(__name__)

SWITCH_TIMEOUT_S = 30.0
_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class LiveModel:
    """The model serving now: where it came from, its manifest, and the hash of the file loaded."""

    ref: ModelRef
    manifest: ModelManifest
    sha256: str
    classes: list[str] | None  # the classes the detector keeps (None: all), fixed when it opened


def watched_classes(zones: ZonesDoc, class_names: list[str], class_map: dict[str, str]) -> list[str]:
    """Model classes that any zone or line watches, directly or through the class map."""
    wanted = {c for item in [*zones.zones, *zones.lines] for c in item.classes}
    return [n for n in class_names if n in wanted or class_map.get(n) in wanted]


def detected_classes(config: AgentConfig, manifest: ModelManifest, zones: ZonesDoc) -> list[str] | None:
    """The classes a detector for `zones` keeps: the configured ones, else those the zones watch; None: all."""
    return config.model.classes or watched_classes(zones, manifest.classes, manifest.class_map) or None


def open_detector(config: AgentConfig, ref: ModelRef, zones: ZonesDoc) -> tuple[Detector, LiveModel]:
    """Open the model at `ref` with the config's detector settings, keeping the classes the zones watch, at the
    input sizes the cameras ask for."""
    manifest = load_manifest(ref.manifest_path)
    classes = detected_classes(config, manifest, zones)
    detector = Detector.open(
        ref.manifest_path,
        ref.models_dir,
        backend=config.model.backend,
        confidence=config.model.confidence,
        nms_iou=config.model.nms_iou,
        class_names=classes,
        sizes_wh=[c.detect.input_size_wh for c in config.cameras if c.detect.input_size_wh is not None],
        **({"sessions": config.model.onnxruntime_sessions} if config.model.backend == "onnxruntime" else {}),
    )
    return detector, LiveModel(ref, manifest, detector.model_sha256, classes)


class Served(NamedTuple):
    """What a starting agent serves, and the zones document last committed (see `LiveControl`)."""

    model: ModelRef
    zones: ZonesDoc
    committed_zones: ZonesDoc
    config_patch: dict[str, Any]


def served_setup(layout: SlotLayout | None, baseline: Baseline) -> Served:
    """What to serve at start: the persisted OTA state's choice, never a guess (an unreadable state stops the start)."""
    if layout is None:
        return Served(baseline.model, baseline.zones, baseline.zones, baseline.config_patch)
    try:
        state = layout.store.load()
    except OtaError as e:
        raise ConfigError(f"OTA state: {e.message}") from e
    return Served(
        served_model(layout, state, baseline),
        served_zones(layout, state, baseline),
        committed_zones(layout, state, baseline),
        served_config_patch(layout, state, baseline),
    )


class LiveControl:
    """The one owner of what is live: the config (with the OTA patch), the model, the zones
    and the last committed zones document. It opens the first detector, builds the pipeline
    around it (`make_pipeline(detector, class_names, class_map, zones, tracker_config)`), and
    performs every later change by handing the pipeline a new setup at a frame boundary.
    Everything else (the agent's status, the zone editor, the OTA applier) asks it.

    `audit(actor, action, **details)` and `publish_status()` are the agent's; `layout` is
    the OTA slot layout (None: OTA off); `stopping` is set once the frame loop has ended,
    so a switch fails at once instead of waiting for a frame boundary that will not come;
    `opener` opens a detector (`open_detector`; tests wrap it).

    Zones have one source of truth: the zones file holds the last committed document (a
    technician's save, or an OTA update once it passed its health window) and the live
    zones are that document, except during an OTA health window, when a rollback returns
    to it. At start the file is rewritten if the OTA state says another document was
    committed (a stop between the commit and the file's write).
    """

    def __init__(
        self,
        base_config: AgentConfig,
        served: Served,
        file_zones: ZonesDoc,
        make_pipeline: Callable[..., Pipeline],
        audit: Callable[..., Any],
        publish_status: Callable[[], None],
        layout: SlotLayout | None,
        stopping: threading.Event,
        opener: Callable[[AgentConfig, ModelRef, ZonesDoc], tuple[FrameDetector, LiveModel]] = open_detector,
    ) -> None:
        self._base = base_config
        self.config = patched_config(base_config, served.config_patch)
        self.zones = served.zones
        self._committed = served.committed_zones
        self._audit = audit
        self._publish_status = publish_status
        self._layout = layout
        self._stopping = stopping
        self._open = opener
        self._switch_lock = threading.Lock()
        if self._committed != file_zones:  # served all the same if not written (the OTA state holds it): said each start
            self._write_committed_zones(hint=f"the file still holds older zones: put it in {WRITABLE_FOLDER_ADVICE}")
        detector, self.model = opener(self.config, served.model, self.zones)
        manifest = self.model.manifest
        self.pipeline = make_pipeline(detector, manifest.classes, manifest.class_map, self.zones, self.config.tracker)

    def close(self) -> None:
        """Once the frame loop has ended: close the live detector."""
        self.pipeline.close()

    # --- checks (any thread; nothing changes) ---

    def check_model(self, manifest: ModelManifest) -> None:
        check_zones(self.config, self.zones, manifest.classes, manifest.class_map, where="ota model")
        if self.config.model.classes:
            manifest.class_ids(self.config.model.classes)

    def check_zones(self, zones: ZonesDoc) -> None:
        manifest = self.model.manifest
        check_zones(self.config, zones, manifest.classes, manifest.class_map, where="ota zones")

    def check_config(self, patch: dict[str, Any]) -> None:
        check_live_keys(patch)
        config = patched_config(self._base, patch)
        if config.model.classes:
            self.model.manifest.class_ids(config.model.classes)

    # --- changes: each returns once the change is live, or raises with the old one still live ---

    def swap_zones(self, zones: ZonesDoc, actor: str) -> None:
        """Apply a checked zones document at the next frame boundary, audited and shown in status."""
        with self._switch_lock:
            self._swap_zones(zones, actor)
        self._publish_status()

    def save_edited_zones(self, zones: ZonesDoc) -> int:
        """The zone editor's save, a commit: checked, written to the zones file, applied live;
        refused while the fleet owns the zones (an OTA zones update applied or in progress)."""
        with self._switch_lock:
            self._refuse_if_ota_holds_zones()
            self.check_zones(zones)
            self._write_zones_file(zones)
            try:
                self._swap_zones(zones, "technician")
            except BaseException:
                self._write_zones_file(self._committed)  # the file keeps matching what is live
                raise
            self._committed = zones
        self._publish_status()
        return zones.version

    def switch_zones(self, zones: ZonesDoc) -> None:
        self.swap_zones(zones, actor="ota")

    def switch_model(self, model: ModelRef) -> None:
        with self._switch_lock:
            old = self.model
            self._swap_detector(self.config, model)
            self._audit(
                "ota", "model_change", **self._ota_versions("model"), old_model=old.manifest.name,
                old_sha256=old.sha256, new_model=self.model.manifest.name, new_sha256=self.model.sha256,
            )  # fmt: skip
        self._publish_status()

    def switch_config(self, patch: dict[str, Any]) -> None:
        with self._switch_lock:
            config = patched_config(self._base, patch)
            # The detector is reopened with the new settings: its thresholds are fixed at open.
            self._swap_detector(config, self.model.ref)
            self.config = config
            self._audit("ota", "config_change", **self._ota_versions("config"), patch=patch)
        self._publish_status()

    def commit(self, kind: str) -> None:
        """An OTA update of `kind` passed its health window: what is live is the committed version."""
        if kind != "zones":
            return
        with self._switch_lock:
            self._committed = self.zones
            self._write_committed_zones()  # the OTA state says what is committed: the next start tries the file again

    # --- what is live ---

    def committed_zones(self) -> ZonesDoc:
        return self._committed

    def live_model_sha256(self) -> str:
        return self.model.sha256

    def live_zones_version(self) -> int:
        return self.zones.version

    def health(self) -> HealthSample:
        stats = self.pipeline.stats
        return HealthSample(frames=stats.frames, errors=stats.errors, not_streaming=self.pipeline.not_streaming())

    def publish_status(self) -> None:
        self._publish_status()

    # --- internals (callers hold the switch lock) ---

    def _swap_zones(self, zones: ZonesDoc, actor: str) -> None:
        """Trackers keep their tracks unless the zones watch other classes: the detector
        filters classes when it opens, so it is reopened then."""
        old = self.zones.version
        needed = detected_classes(self.config, self.model.manifest, zones)
        kept = self.model.classes
        if kept is None or needed is None or set(needed) <= set(kept):
            self._wait(self.pipeline.swap(zones=zones))
        else:
            self._swap_detector(self.config, self.model.ref, zones)
        self.zones = zones
        self._audit(actor, "zones_change", old_version=old, new_version=zones.version)

    def _swap_detector(self, config: AgentConfig, ref: ModelRef, zones: ZonesDoc | None = None) -> None:
        """Open `ref` with `config` for `zones` (else the live ones) and swap it in with them."""
        detector, model = self._open(config, ref, zones or self.zones)
        manifest = model.manifest
        changes = {} if zones is None else {"zones": zones}
        self._wait(
            self.pipeline.swap(
                detector=detector, class_names=manifest.classes, class_map=manifest.class_map,
                tracker_config=config.tracker, **changes,
            )
        )  # fmt: skip
        self.model = model

    def _wait(self, applied: threading.Event) -> None:
        """Wait until the loop installed the swap; past the timeout or once the loop ended, withdraw it."""
        deadline = time.monotonic() + SWITCH_TIMEOUT_S
        while not applied.wait(_POLL_S):
            if (self._stopping.is_set() or time.monotonic() > deadline) and self.pipeline.withdraw(applied):
                raise TimeoutError("the frame loop did not reach a frame boundary: the old setup stays live")

    def _refuse_if_ota_holds_zones(self) -> None:
        """ConfigError while the zones come from an OTA slot, or an OTA zones update is under way."""
        if self._layout is None:
            return
        state = self._layout.store.load()
        if state.update is not None and state.update.kind == "zones":
            raise ConfigError("an over-the-air zones update is being applied: save again once it has ended")
        if state.served_slot("zones") is not None:
            raise ConfigError("the zones of this box are managed over the air: change them from the fleet")

    def _write_committed_zones(self, **hint: str) -> None:
        """The zones file rewritten to what OTA committed; a file that cannot be written is a warning, not a failure."""
        try:
            self._write_zones_file(self._committed)
        except OSError as e:
            log.warning("zones_file_not_written", path=str(self._base.zones_file), error=e.strerror or str(e), **hint)

    def _write_zones_file(self, zones: ZonesDoc) -> None:
        """Atomically and durably; no zones file configured: nothing to write."""
        if self._base.zones_file is not None:
            text = yaml.safe_dump(zones.model_dump(mode="json"), sort_keys=False)
            write_atomic(self._base.zones_file, text.encode("utf-8"))

    def _ota_versions(self, kind: str) -> dict[str, int]:
        """old_version/new_version of the OTA update being switched (or rolled back); empty outside OTA."""
        update = None if self._layout is None else self._layout.store.load().update
        if update is None or update.kind != kind:
            return {}
        versions = (update.previous_version, update.version)
        old, new = reversed(versions) if update.step == "rollback" else versions
        return {"old_version": old, "new_version": new}
