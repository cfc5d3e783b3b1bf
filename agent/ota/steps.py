"""What each step of an update does, per kind. Every step is idempotent: a resumed update runs it again."""

from __future__ import annotations

import json
import time

from agent.ota.control import AgentControl, Baseline
from agent.ota.download import download
from agent.ota.errors import ErrorCode, OtaError
from agent.ota.golden import (
    GOLDEN_NMS_IOU,
    check_fps,
    check_golden,
    detector_confidence,
    load_golden_frames,
)
from agent.ota.manifest import Manifest, ModelPayload, ZonesPayload
from agent.ota.report import StepSettings
from agent.ota.slots import (
    CONFIG_PATCH_FILE,
    MODEL_MANIFEST_FILE,
    ZONES_FILE,
    SlotLayout,
    check_external_data,
)
from agent.ota.state import Slot, Step, Update
from engines.atomic import write_atomic
from engines.detector import Detector
from engines.manifest import sha256_of

NEXT_STEP: dict[Step, Step] = {
    "download": "verify",
    "verify": "stage",
    "stage": "validate",
    "validate": "switch",
    "switch": "watch",
}


class Steps:
    """The steps of one update; `Applier` persists the state around each call."""

    def __init__(self, control: AgentControl, layout: SlotLayout, baseline: Baseline, settings: StepSettings) -> None:
        self._control = control
        self._layout = layout
        self._baseline = baseline
        self._settings = settings

    def download(self, manifest: Manifest, update: Update) -> None:
        """Fetch every artifact into the inactive slot (zones and config updates carry theirs inline)."""
        if not isinstance(manifest.payload, ModelPayload):
            return
        folder = self._layout.slot_dir(update.kind, update.slot)
        s = self._settings
        for artifact in manifest.payload.artifacts:
            download(
                artifact,
                folder / artifact.name,
                read_timeout_s=s.download_read_timeout_s,
                total_timeout_s=s.download_total_timeout_s,
                attempts=s.download_attempts,
                retry_delay_s=s.download_retry_delay_s,
            )

    def verify(self, manifest: Manifest, update: Update) -> None:
        """Check the slot's files against the signed hashes (again: a crash may have left anything) and the
        graph's external-data paths."""
        if not isinstance(manifest.payload, ModelPayload):
            return
        folder = self._layout.slot_dir(update.kind, update.slot)
        for artifact in manifest.payload.artifacts:
            path = folder / artifact.name
            if not path.is_file() or sha256_of(path) != artifact.sha256:
                raise OtaError(ErrorCode.HASH_MISMATCH, f"{artifact.name}: staged file differs from its signed sha256")
        check_external_data(folder / manifest.payload.model.file)

    def stage(self, manifest: Manifest, update: Update) -> None:
        """Write the document the agent will load from the slot: an engine manifest, zones or a config patch."""
        folder = self._layout.slot_dir(update.kind, update.slot)
        payload = manifest.payload
        if isinstance(payload, ModelPayload):
            write_atomic(folder / MODEL_MANIFEST_FILE, payload.model.model_dump_json(indent=1).encode("utf-8"))
        elif isinstance(payload, ZonesPayload):
            write_atomic(folder / ZONES_FILE, json.dumps(payload.zones).encode("utf-8"))
        else:
            write_atomic(folder / CONFIG_PATCH_FILE, json.dumps(payload.patch).encode("utf-8"))

    def validate(self, manifest: Manifest, update: Update) -> None:
        """Prove the candidate works here before it serves."""
        payload = manifest.payload
        if isinstance(payload, ModelPayload):
            self._control.check_model(payload.model)
            ref = self._layout.model_ref(update.slot)
            with Detector.open(
                ref.manifest_path,
                ref.models_dir,
                backend=self._settings.backend,
                confidence=detector_confidence(payload.golden),
                nms_iou=GOLDEN_NMS_IOU,
            ) as detector:
                images = load_golden_frames(payload.golden, self._settings.golden_dir)
                check_golden(detector, payload.golden, images)
                check_fps(detector, images, self._settings.fps_floor)
        elif isinstance(payload, ZonesPayload):
            self._control.check_zones(self._layout.zones(update.slot))
        else:
            self._control.check_config(self._layout.config_patch(update.slot))

    def switch(self, manifest: Manifest, update: Update) -> None:
        """Make the staged slot live at a frame boundary."""
        self._switch_to(update, update.slot)

    def switch_back(self, update: Update) -> None:
        """Make the previous slot (or the agent's own config) live again; for zones, the last
        committed document, whoever committed it (a technician's save in the zone editor too)."""
        if update.kind == "zones":
            self._control.switch_zones(self._control.committed_zones())
        else:
            self._switch_to(update, update.previous)

    def watch(self) -> None:
        """Frames must keep flowing and no error may be counted for the whole health window."""
        s = self._settings
        start = self._control.health()
        deadline = time.monotonic() + s.health_window_s
        while time.monotonic() < deadline:
            time.sleep(min(s.health_poll_s, max(0.0, deadline - time.monotonic())))
            now = self._control.health()
            if now.errors > start.errors:
                raise OtaError(ErrorCode.UNHEALTHY, f"{now.errors - start.errors} errors after the switch")
        end = self._control.health()
        frames = end.frames - start.frames
        if frames < s.health_min_frames:
            said = f"{frames} frames in the {s.health_window_s:g} s window, need {s.health_min_frames}"
            if end.not_streaming:  # the operator should know before blaming the update
                down = ", ".join(f"{cid} ({state})" for cid, state in sorted(end.not_streaming.items()))
                said += f"; cameras not streaming: {down}, so the update itself may be sound"
            raise OtaError(ErrorCode.UNHEALTHY, said)

    def _switch_to(self, update: Update, slot: Slot | None) -> None:
        if update.kind == "model":
            self._control.switch_model(self._baseline.model if slot is None else self._layout.model_ref(slot))
        elif update.kind == "zones":  # forward only (`switch_back` returns to the committed document)
            assert slot is not None
            self._control.switch_zones(self._layout.zones(slot))
        else:
            patch = self._baseline.config_patch if slot is None else self._layout.config_patch(slot)
            self._control.switch_config(patch)
