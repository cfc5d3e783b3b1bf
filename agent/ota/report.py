"""What the applier is told (device identity, step settings) and what it says (`.../ota/status`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.ota.control import AgentControl
from agent.ota.errors import OtaError
from agent.ota.manifest import Kind

# Progress states are the step names; the rest are outcomes. `fleet status` reads these.
OtaState = Literal[
    "download", "verify", "stage", "validate", "switch", "watch", "rollback",
    "committed", "failed", "rolled_back", "rollback_failed", "refused",
]
DONE_STATES = frozenset({"committed"})
FAILED_STATES = frozenset({"failed", "rolled_back", "rollback_failed", "refused"})


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Who the device is, for `verify`: its id, its fleet groups and its agent version (semver)."""

    device_id: str
    groups: tuple[str, ...]
    agent_version: str


@dataclass(frozen=True, slots=True)
class StepSettings:
    """Device-side knobs of the steps; the manifest cannot loosen them."""

    golden_dir: Path  # the device's golden frames (PNG), provisioned with the box
    backend: str = "onnxruntime"
    fps_floor: float = 0.0  # frames/s the staged model must reach on one camera's frames; 0: no floor
    health_window_s: float = 10.0
    health_min_frames: int = 1  # frames that must flow through the new version during the window
    health_poll_s: float = 0.1
    max_resumes: int = 3  # starts that may find one update in progress before it is rolled back
    download_read_timeout_s: float = 30.0
    download_total_timeout_s: float = 1800.0
    download_attempts: int = 3
    download_retry_delay_s: float = 1.0


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    message: Annotated[str, Field(max_length=2000)]


class OtaStatus(BaseModel):
    """One message on `.../ota/status` (retained): the update's state and what is live."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["edge.ota_status/1"] = Field("edge.ota_status/1", alias="schema")
    device_id: str
    ts: int = Field(ge=0, description="UTC milliseconds")
    state: OtaState
    kind: Kind | None = Field(None, description="Kind of the update; None when the message could not be read.")
    version: int | None = Field(None, description="Version of the update; None when refused before parsing.")
    error: ErrorInfo | None = None
    model_sha256: str = Field(description="SHA-256 of the model serving now.")
    zones_version: int = Field(description="Version of the zones serving now.")

    @classmethod
    def make(
        cls,
        device_id: str,
        state: OtaState,
        kind: Kind | None,
        version: int | None,
        error: OtaError | None,
        control: AgentControl,
    ) -> OtaStatus:
        return cls(
            device_id=device_id,
            ts=time.time_ns() // 1_000_000,
            state=state,
            kind=kind,
            version=version,
            error=None if error is None else ErrorInfo(code=error.code.value, message=error.message[:2000]),
            model_sha256=control.live_model_sha256(),
            zones_version=control.live_zones_version(),
        )

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode("utf-8")
