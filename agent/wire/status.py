"""Retained status and periodic health messages (device state, never pixels)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{8,64}$")]
CameraState = Literal["new", "connecting", "online", "offline", "ended", "stopped"]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelInfo(_Msg):
    name: Id
    sha256: Hex


class Status(_Msg):
    """Retained on `.../status`; the broker publishes the `offline` form as our last will."""

    schema_: Literal["edge.status/1"] = Field("edge.status/1", alias="schema")
    state: Literal["online", "offline"]
    reason: Literal["stopped", "crashed", "lost"] | None = Field(
        None,
        description="why offline: stopped (a clean stop), crashed (an error ended the agent; see its log), "
        "lost (the last will: the broker lost the agent without a word, e.g. killed or cut off)",
    )
    device_id: Id
    boot_id: Hex
    ts: int = Field(ge=0, description="UTC milliseconds")
    agent_version: Annotated[str, Field(max_length=32)] | None = None
    model: ModelInfo | None = None
    zones_version: int | None = Field(None, ge=0, description="the zones document's own version, as its author set it")
    zones_sha256: Hex | None = Field(
        None, description="SHA-256 of the zones in force (canonical JSON): changes with any edit, whatever the version"
    )
    cameras: dict[Id, CameraState] = Field({}, max_length=64)
    audit_head: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="hash of the last audit-log record: the centre notices a rewritten log"
    )


class CameraHealth(_Msg):
    state: CameraState
    fps: float = Field(ge=0, description="frames per second delivered by the camera")
    detect_fps: float | None = Field(
        None, ge=0, description="frames per second that went through the detector (the others: tracker predictions)"
    )
    frames: int = Field(ge=0)
    dropped: int = Field(ge=0)
    reconnects: int = Field(ge=0)


class StageLatency(_Msg):
    p50: float
    p95: float
    p99: float
    max: float


class OutboxHealth(_Msg):
    depth: int = Field(ge=0)
    size_bytes: int = Field(ge=0)
    oldest_age_s: float = Field(ge=0)
    dropped: int = Field(ge=0, description="events shed unsent (outbox full or too old) since the outbox was made")


class DiskHealth(_Msg):
    full: bool = Field(
        description="the state disk is full or nearly: the outbox sheds its oldest events, "
        "and events or audit records that cannot be written are counted as lost"
    )
    free_bytes: int = Field(ge=0)
    events_lost: int = Field(ge=0, description="events never stored (disk full), since the state folder was made")
    audit_records_lost: int = Field(ge=0, description="audit records not written (disk full); the log notes each gap")


class Health(_Msg):
    """Published every `health_interval_s` on `.../health`."""

    schema_: Literal["edge.health/1"] = Field("edge.health/1", alias="schema")
    device_id: Id
    boot_id: Hex
    ts: int = Field(ge=0, description="UTC milliseconds")
    cameras: dict[Id, CameraHealth] = Field(max_length=64)
    stages_ms: dict[Annotated[str, Field(max_length=16)], StageLatency] = Field(max_length=16)
    outbox: OutboxHealth
    disk: DiskHealth | None = None
    mqtt_reconnects: int = Field(ge=0)
    detect_errors: int = Field(0, ge=0, description="detector batches that failed since start (their frames are dropped)")
    mqtt_rejected: int = Field(0, ge=0, description="events the broker refused for good since start (e.g. not authorised)")
    ota_refused: int = Field(
        0, ge=0, description="update messages received and refused since start (unparsable, unsigned, not for this box, "
        "already applied, or dropped from a full queue)",
    )  # fmt: skip
    cpu_percent: float = Field(ge=0)
    rss_mb: float = Field(ge=0)


class DoctorProbe(_Msg):
    """`edge-agent doctor`'s probe on `.../doctor`: proves a publish is routed, carries nothing else."""

    schema_: Literal["edge.doctor_probe/1"] = Field("edge.doctor_probe/1", alias="schema")
    device_id: Id
    nonce: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


def to_bytes(message: _Msg) -> bytes:
    return message.model_dump_json(by_alias=True, exclude_none=True).encode()
