"""Live changes to the running agent: model, zones and config swapped at a frame boundary.

`LiveControl` is the agent's `AgentControl` (agent/ota/control.py): the OTA
applier drives it from its worker thread, and the zone editor saves through
`swap_zones` from its HTTP thread. Every change waits until the frame loop has
installed it (so "returned" means "live"), is written to the audit log with
its old and new versions, and re-publishes the retained status. Changes are
serialised: each one is built on the state the previous one left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.settings.config import AgentConfig, ConfigError, check_zones
from agent.ota.control import Baseline, HealthSample, ModelRef
from agent.ota.errors import OtaError
from agent.ota.slots import SlotLayout, served_config_patch, served_model, served_zones
from agent.runtime.pipeline import Pipeline
from agent.core.tracker import TrackerConfig
from agent.settings.zones import ZonesDoc
from engines.detector import Detector
from engines.manifest import ModelManifest, load_manifest

# Top-level config keys an update may change while running (None: any sub-key); the rest
# (broker, cameras, state_dir...) need a restart and are refused.
LIVE_CONFIG_KEYS: dict[str, frozenset[str] | None] = {
    "model": frozenset({"confidence", "nms_iou", "classes"}),
    "tracker": None,
}
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
    """Open the model at `ref` with the config's detector settings, keeping the classes the zones watch."""
    manifest = load_manifest(ref.manifest_path)
    classes = detected_classes(config, manifest, zones)
    detector = Detector.open(
        ref.manifest_path,
        ref.models_dir,
        backend=config.model.backend,
        confidence=config.model.confidence,
        nms_iou=config.model.nms_iou,
        class_names=classes,
    )
    return detector, LiveModel(ref, manifest, detector.model_sha256, classes)


def patched_config(base: AgentConfig, patch: Mapping[str, Any]) -> AgentConfig:
    """`base` with a JSON merge patch applied (mappings merge, anything else replaces), validated again."""
    return AgentConfig.model_validate(_merge(base.model_dump(), patch))


def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def served_setup(layout: SlotLayout | None, baseline: Baseline) -> tuple[ModelRef, ZonesDoc, dict]:
    """What to serve at start: the persisted OTA state's choice, never a guess (an unreadable state stops the start)."""
    if layout is None:
        return baseline.model, baseline.zones, baseline.config_patch
    try:
        state = layout.store.load()
    except OtaError as e:
        raise ConfigError(f"OTA state: {e.message}") from e
    return (
        served_model(layout, state, baseline),
        served_zones(layout, state, baseline),
        served_config_patch(layout, state, baseline),
    )


def check_live_keys(patch: Mapping[str, Any]) -> None:
    """ConfigError unless every key of `patch` can be applied without a restart."""
    for key, value in patch.items():
        if key not in LIVE_CONFIG_KEYS:
            raise ConfigError(f"config patch: {key!r} cannot change while running (live keys: {sorted(LIVE_CONFIG_KEYS)})")
        allowed = LIVE_CONFIG_KEYS[key]
        if allowed is not None and isinstance(value, Mapping) and set(value) - allowed:
            raise ConfigError(f"config patch: {key}.{sorted(set(value) - allowed)} cannot change while running")


class LiveControl:
    """The agent's AgentControl over its running pipeline.

    `base_config` is the config file's; `patch` the config patch serving now (from OTA);
    `audit(actor, action, **details)` and `publish_status()` are the agent's; `layout` is
    the OTA slot layout (None: OTA off), read for the versions an OTA switch moves between;
    `stopping` is set once the frame loop has ended, so a switch fails at once instead of
    waiting for a frame boundary that will not come.
    """

    def __init__(
        self,
        base_config: AgentConfig,
        patch: dict[str, Any],
        model: LiveModel,
        zones: ZonesDoc,
        pipeline: Pipeline,
        audit: Callable[..., None],
        publish_status: Callable[[], None],
        layout: SlotLayout | None,
        stopping: threading.Event,
    ) -> None:
        self._base = base_config
        self.config = patched_config(base_config, patch)
        self.model = model
        self.zones = zones
        self._pipeline = pipeline
        self._audit = audit
        self._publish_status = publish_status
        self._layout = layout
        self._stopping = stopping
        self._switch_lock = threading.Lock()

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

    # --- switches: each returns once the change is live, or raises with the old one still live ---

    def swap_zones(self, zones: ZonesDoc, actor: str) -> None:
        """Apply a checked zones document at the next frame boundary. Trackers keep their tracks unless
        the zones watch other classes: the detector filters classes when it opens, so it is reopened."""
        with self._switch_lock:
            old = self.zones.version
            needed = detected_classes(self.config, self.model.manifest, zones)
            kept = self.model.classes
            if kept is None or needed is None or set(needed) <= set(kept):
                self._wait(self._pipeline.swap_zones(zones))
            else:
                self.model = self._swap_detector(*open_detector(self.config, self.model.ref, zones), zones)
            self.zones = zones
            self._audit(actor, "zones_change", old_version=old, new_version=zones.version)
        self._publish_status()

    def switch_zones(self, zones: ZonesDoc) -> None:
        self.swap_zones(zones, actor="ota")

    def switch_model(self, model: ModelRef) -> None:
        with self._switch_lock:
            old = self.model
            self.model = self._swap_detector(*open_detector(self.config, model, self.zones))
            self._audit(
                "ota", "model_change", **self._ota_versions("model"), old_model=old.manifest.name,
                old_sha256=old.sha256, new_model=self.model.manifest.name, new_sha256=self.model.sha256,
            )  # fmt: skip
        self._publish_status()

    def switch_config(self, patch: dict[str, Any]) -> None:
        with self._switch_lock:
            config = patched_config(self._base, patch)
            # The detector is reopened with the new settings: its thresholds are fixed at open.
            self.model = self._swap_detector(*open_detector(config, self.model.ref, self.zones), tracker=config.tracker)
            self.config = config
            self._audit("ota", "config_change", **self._ota_versions("config"), patch=patch)
        self._publish_status()

    # --- what is live ---

    def live_model_sha256(self) -> str:
        return self.model.sha256

    def live_zones_version(self) -> int:
        return self._pipeline.zones_version

    def health(self) -> HealthSample:
        return HealthSample(frames=self._pipeline.stats.frames, errors=self._pipeline.stats.errors)

    def publish_status(self) -> None:
        self._publish_status()

    def ota_serves_zones(self) -> bool:
        """True while the zones come from an OTA slot: the fleet, not the zones file, owns them then."""
        return self._layout is not None and self._layout.store.load().served_slot("zones") is not None

    # --- internals (callers hold the switch lock) ---

    def _swap_detector(
        self, detector: Detector, model: LiveModel, zones: ZonesDoc | None = None, tracker: TrackerConfig | None = None
    ) -> LiveModel:
        """Swap in an opened detector (with `zones` and `tracker` if given, else the live ones); returns `model`."""
        manifest = model.manifest
        try:
            applied = self._pipeline.swap_detector(
                detector, manifest.classes, manifest.class_map, tracker or self.config.tracker, zones
            )
        except BaseException:  # the rules did not build for the new classes: the old setup stays
            detector.close()
            raise
        self._wait(applied, detector)
        return model

    def _wait(self, applied: threading.Event, detector: Detector | None = None) -> None:
        """Wait until the loop installed the swap; past the timeout or once the loop ended, withdraw it."""
        deadline = time.monotonic() + SWITCH_TIMEOUT_S
        while not applied.wait(_POLL_S):
            if (self._stopping.is_set() or time.monotonic() > deadline) and self._pipeline.withdraw(applied):
                if detector is not None:
                    detector.close()
                raise TimeoutError("the frame loop did not reach a frame boundary: the old setup stays live")

    def _ota_versions(self, kind: str) -> dict[str, int]:
        """old_version/new_version of the OTA update being switched (or rolled back); empty outside OTA."""
        update = None if self._layout is None else self._layout.store.load().update
        if update is None or update.kind != kind:
            return {}
        versions = (update.previous_version, update.version)
        old, new = reversed(versions) if update.step == "rollback" else versions
        return {"old_version": old, "new_version": new}
