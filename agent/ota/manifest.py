"""The one OTA manifest format: what an update is, whom it is for, and how to check it.

A `Manifest` is signed as canonical JSON bytes (see `canonical`) and travels
inside a `SignedManifest` envelope, where it is kept as that exact string: the
device checks the signature over the bytes it received, never over a
re-serialisation of untrusted input. The schema is strict on the device
(`verify` validates in pydantic's strict JSON mode: no "3" for 3, no numbers
for dates) and every container is bounded, so a signed but hostile or buggy
manifest cannot make the device allocate without limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    model_validator,
)

from agent.ota.canonical import canonical_json_bytes
from agent.ota.semver import MAX_SEMVER_CHARS, semver_key
from agent.settings.trust import KEY_ID_PATTERN
from engines.manifest import ModelManifest

MAX_MESSAGE_BYTES = 256 * 1024
MAX_ARTIFACT_SIZE_BYTES = 512 * 1024 * 1024
MAX_ARTIFACTS = 16
MAX_TARGETS = 1000
MAX_SIGNATURES = 8
MAX_GOLDEN_FRAMES = 32
MAX_GOLDEN_BOXES = 300
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_REPORT_BYTES = 16 * 1024
MAX_URL_CHARS = 2048
# Anti-rollback versions are persisted; keep them inside a signed 64-bit integer.
MAX_VERSION = 2**63 - 1

Kind = Literal["model", "zones", "config"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)

# Device and group ids are MQTT topic levels (no '/', '+', '#', spaces); the
# same alphabet as the agent config's ids, so every configured box can be targeted.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
# Artifact and golden frame names become file names in a staging slot: a bare
# name that cannot be '.', '..' or contain a path separator.
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Coordinate = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
ClassId = Annotated[int, Field(ge=0)]


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


def _semver(value: str) -> str:
    semver_key(value)
    return value


Semver = Annotated[str, Field(max_length=MAX_SEMVER_CHARS), AfterValidator(_semver)]


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("artifact URLs must be http or https")
    if not parts.hostname:
        raise ValueError("artifact URL has no host")
    # Manifests are published as retained messages: a password in one would be readable by every subscriber.
    if parts.username is not None or parts.password is not None:
        raise ValueError("artifact URL must not carry credentials")
    _ = parts.port  # raises ValueError on a port that is not a number in 0..65535
    return url


HttpUrl = Annotated[str, Field(pattern=r"^[!-~]+$", max_length=MAX_URL_CHARS), AfterValidator(_http_url)]


def _bounded_json(max_bytes: int) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        size_bytes = len(canonical_json_bytes(value))
        if size_bytes > max_bytes:
            raise ValueError(f"document is {size_bytes} bytes as canonical JSON, more than {max_bytes}")
        return value

    return AfterValidator(check)


def _box_ordered(box: tuple[float, float, float, float, int, float]) -> tuple[float, float, float, float, int, float]:
    x1, y1, x2, y2 = box[:4]
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"box {box[:4]} needs x2 > x1 and y2 > y1")
    return box


# [x1, y1, x2, y2, class_id, score], corners in pixels of the golden frame.
GoldenBox = Annotated[
    tuple[Coordinate, Coordinate, Coordinate, Coordinate, ClassId, Score], AfterValidator(_box_ordered)
]


class Target(BaseModel):
    """Which devices an update is for: a device matches by its id or by any of its groups."""

    model_config = _FROZEN

    device_ids: list[Identifier] = Field(
        default_factory=list, max_length=MAX_TARGETS, description="Device ids targeted."
    )
    groups: list[Identifier] = Field(default_factory=list, max_length=MAX_TARGETS, description="Group names targeted.")

    @model_validator(mode="after")
    def _not_empty(self) -> Target:
        if not self.device_ids and not self.groups:
            raise ValueError("target needs at least one device id or group")
        return self

    def matches(self, device_id: str, groups: Iterable[str]) -> bool:
        """True if `device_id` is targeted or one of `groups` is."""
        return device_id in self.device_ids or not set(self.groups).isdisjoint(groups)


class Artifact(BaseModel):
    """One file to download, checked against its signed length and SHA-256."""

    model_config = _FROZEN

    name: FileName = Field(description="File name in the staging slot (a bare name, no path).")
    url: HttpUrl = Field(description="Where to download the file from: an http or https URL without credentials.")
    sha256: Sha256Hex = Field(description="SHA-256 of the file, lower-case hex.")
    size_bytes: int = Field(
        gt=0, le=MAX_ARTIFACT_SIZE_BYTES, description="Exact size of the file in bytes; the download stops there."
    )


class GoldenFrame(BaseModel):
    """The detections a model must produce on one golden frame stored on the device."""

    model_config = _FROZEN

    frame: FileName = Field(description="File name of the golden frame in the device's golden frames directory.")
    boxes: list[GoldenBox] = Field(
        max_length=MAX_GOLDEN_BOXES,
        description="Expected detections as [x1, y1, x2, y2, class_id, score], corners in the frame's pixels.",
    )


class GoldenReference(BaseModel):
    """The reference a staged model must reproduce before it goes live, and how closely."""

    model_config = _FROZEN

    frames: list[GoldenFrame] = Field(
        min_length=1, max_length=MAX_GOLDEN_FRAMES, description="Golden frames and their expected detections."
    )
    iou_min: float = Field(
        default=0.5, gt=0, le=1, description="Minimum IoU for a detection to match an expected box of the same class."
    )
    score_abs_tol: float = Field(
        default=0.1, ge=0, le=1, description="Largest allowed absolute difference between matched scores."
    )

    @model_validator(mode="after")
    def _unique_frames(self) -> GoldenReference:
        names = [f.frame for f in self.frames]
        if len(set(names)) != len(names):
            raise ValueError("golden frame names must be unique")
        return self


class ModelPayload(BaseModel):
    """A new detector: its files, the engine manifest that runs it, and the evidence that it works."""

    model_config = _FROZEN

    kind: Literal["model"] = Field(description="Payload discriminator: a model update.")
    artifacts: list[Artifact] = Field(
        min_length=1, max_length=MAX_ARTIFACTS, description="Files to download: the graph and any external data."
    )
    model: ModelManifest = Field(
        description="The engine's manifest of the model (decoder, precision, input spec, classes, class map); "
        "its `file` names one of the artifacts, with the same sha256 and size."
    )
    calibration_report: Annotated[dict[str, JsonValue], _bounded_json(MAX_REPORT_BYTES)] = Field(
        default_factory=dict,
        description=f"Accuracy report of the INT8 calibration (at most {MAX_REPORT_BYTES} bytes of JSON); "
        "required when the model's precision is int8.",
    )
    golden: GoldenReference = Field(description="Expected detections on the device's golden frames.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelPayload:
        by_name = {a.name: a for a in self.artifacts}
        if len(by_name) != len(self.artifacts):
            raise ValueError("artifact names must be unique")
        graph = by_name.get(self.model.file)
        if graph is None:
            raise ValueError(f"model.file {self.model.file!r} is not one of the artifacts {sorted(by_name)}")
        if (graph.sha256, graph.size_bytes) != (self.model.sha256, self.model.size_bytes):
            raise ValueError(f"artifact {graph.name!r} disagrees with model.sha256/size_bytes")
        if self.model.precision == "int8" and not self.calibration_report:
            raise ValueError("an int8 model needs its calibration_report")
        n_classes = len(self.model.classes)
        for frame in self.golden.frames:
            if any(box[4] >= n_classes for box in frame.boxes):
                raise ValueError(f"golden frame {frame.frame!r} has a class id >= the model's {n_classes} classes")
        return self


class ZonesPayload(BaseModel):
    """A new zones document, applied live; its content is checked by the agent's zones schema when staged."""

    model_config = _FROZEN

    kind: Literal["zones"] = Field(description="Payload discriminator: a zones update.")
    zones: Annotated[dict[str, JsonValue], _bounded_json(MAX_DOCUMENT_BYTES)] = Field(
        description=f"The whole zones document (at most {MAX_DOCUMENT_BYTES} bytes of JSON)."
    )


class ConfigPayload(BaseModel):
    """A patch to the agent's config, applied live; the patched config is validated when staged."""

    model_config = _FROZEN

    kind: Literal["config"] = Field(description="Payload discriminator: a config update.")
    patch: Annotated[dict[str, JsonValue], _bounded_json(MAX_DOCUMENT_BYTES)] = Field(
        min_length=1, description=f"Config keys to change (at most {MAX_DOCUMENT_BYTES} bytes of JSON)."
    )


Payload = Annotated[ModelPayload | ZonesPayload | ConfigPayload, Field(discriminator="kind")]


class Manifest(BaseModel):
    """A signed update: who it is for, its place in the per-kind version sequence, its lifetime, its payload."""

    model_config = _FROZEN

    target: Target = Field(description="Devices and groups the update is for.")
    version: int = Field(
        ge=1, le=MAX_VERSION, description="Version of this kind of update; a device only accepts a higher one."
    )
    issued_at: UtcDatetime = Field(description="When the manifest was signed (UTC).")
    expires: UtcDatetime = Field(description="After this time (UTC) the manifest is refused.")
    min_agent_version: Semver = Field(description="Oldest agent version (semver) that can apply the update.")
    payload: Payload = Field(description="What to apply; `payload.kind` says which kind of update it is.")

    @model_validator(mode="after")
    def _lifetime(self) -> Manifest:
        if self.expires <= self.issued_at:
            raise ValueError("expires must be after issued_at")
        return self

    @property
    def kind(self) -> Kind:
        """The kind of update, from the payload's discriminator."""
        return self.payload.kind


class Signature(BaseModel):
    """One Ed25519 signature over the manifest's bytes."""

    model_config = _FROZEN

    key_id: str = Field(pattern=KEY_ID_PATTERN, description="Id of the signing key (see trust.key_id_of).")
    sig: str = Field(max_length=128, description="Ed25519 signature, standard base64 of 64 bytes.")


class SignedManifest(BaseModel):
    """The envelope on the wire: the manifest's canonical JSON as a string, and its signatures."""

    model_config = _FROZEN

    manifest: str = Field(
        max_length=MAX_MESSAGE_BYTES,
        description="The manifest as canonical JSON text; signatures cover its UTF-8 bytes.",
    )
    signatures: list[Signature] = Field(
        min_length=1,
        max_length=MAX_SIGNATURES,
        description="Signatures by fleet keys; one by a key in the device's trust file is enough (key rotation).",
    )
