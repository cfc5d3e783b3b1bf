"""The narrow interface through which the OTA applier drives the running agent.

The applier owns downloads, slots and persisted state; the agent owns the
frame loop. The applier never touches the pipeline directly: it asks the agent
to check a candidate against its own config, to switch at a frame boundary,
and how many frames went through since, so the agent can change without the
applier knowing its insides (tests drive the agent's own, `agent/runtime/live.py`,
over a file camera: tests/support/live_agent.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.settings.zones import ZonesDoc
from engines.manifest import ModelManifest


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model the agent can open: its engine manifest (JSON) and the folder holding its file."""

    manifest_path: Path
    models_dir: Path


@dataclass(frozen=True, slots=True)
class Baseline:
    """What the agent serves when no OTA slot is active: its own config files. Rollbacks may return to it."""

    model: ModelRef
    zones: ZonesDoc
    config_patch: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HealthSample:
    """Counters since the agent started; the applier compares two samples across the health window."""

    frames: int
    errors: int
    not_streaming: dict[str, str] = field(default_factory=dict)  # camera id -> its state (offline, connecting, ...)


class AgentControl(Protocol):
    """What the applier needs from the agent. Every `switch_*` returns once the change is live.

    `check_*` raise ValueError (ConfigError, ModelError and pydantic's
    ValidationError all are or wrap one) naming what does not fit; `switch_*`
    raise anything on failure and must then leave the old version live.
    """

    def check_model(self, manifest: ModelManifest) -> None:
        """Refuse a model that the live zones and config cannot use (e.g. a watched class it lacks)."""

    def check_zones(self, zones: ZonesDoc) -> None:
        """Refuse zones that do not fit the config and the live model (`config.check_zones`)."""

    def check_config(self, patch: dict[str, Any]) -> None:
        """Refuse a config patch that does not validate or cannot be applied live."""

    def switch_model(self, model: ModelRef) -> None:
        """Open the model, swap it in at a frame boundary, close the old one; return once frames use it."""

    def switch_zones(self, zones: ZonesDoc) -> None:
        """Swap the zones in at a frame boundary (cameras keep running); return once applied."""

    def switch_config(self, patch: dict[str, Any]) -> None:
        """Apply the config patch (the baseline's patch undoes every OTA config change)."""

    def commit(self, kind: str) -> None:
        """The update of `kind` passed its health window: what is live now is the committed version."""

    def committed_zones(self) -> ZonesDoc:
        """The zones document last committed (by OTA or by a technician): what a zones rollback returns to."""

    def live_model_sha256(self) -> str:
        """SHA-256 of the model file serving now."""

    def live_zones_version(self) -> int:
        """`version` of the zones document serving now."""

    def health(self) -> HealthSample:
        """Frames processed and errors counted so far."""

    def publish_status(self) -> None:
        """Re-publish the retained `.../status` so that it shows what is live now."""
