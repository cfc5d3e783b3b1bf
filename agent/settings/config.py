"""Agent configuration: one YAML file validated by pydantic, overridden by
`EDGE_AGENT_...` environment variables (nested with `__`).

Relative paths in the file are relative to the file's folder. `${VAR}` and
`${VAR:-default}` in string values are expanded from the environment; an unset
variable without a default is an error.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from agent.analytics.camera import build_rules
from agent.core.tracker import TrackerConfig
from agent.settings import paths
from agent.settings.camera import CameraConfig
from agent.settings.errors import describe_yaml_error
from agent.settings.trust import TrustStore
from agent.settings.zones import ZonesDoc, load_zones
from engines.decoders import make_decoder
from engines.manifest import ModelError, check_graph_input, load_manifest, resolve_model_file, verify_sha256

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration problem; the message names the file and the field path."""


ConfigPath = Annotated[Path, AfterValidator(paths.resolve)]
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Strict):
    manifest: ConfigPath = Field(description="model manifest (JSON) giving file, hash, input spec, decoder and classes")
    backend: Literal["onnxruntime", "tensorrt"] = Field("onnxruntime", description="inference backend")
    onnxruntime_sessions: int | None = Field(
        None, ge=1, le=16,
        description="onnxruntime only: copies of the model run side by side, each batch of frames split between "
        "them, the CPU cores shared out; absent: one per core (at most 4); 1: one copy on every core",
    )  # fmt: skip
    confidence: float = Field(0.3, gt=0.0, lt=1.0, description="minimum detection score kept")
    nms_iou: float = Field(0.45, gt=0.0, lt=1.0, description="IoU above which overlapping boxes of a class are merged")
    classes: list[str] | None = Field(
        None, description="model class names to detect; absent: every class a zone or line watches"
    )

    @model_validator(mode="after")
    def _sessions_need_onnxruntime(self) -> ModelSettings:
        if self.onnxruntime_sessions is not None and self.backend != "onnxruntime":
            raise ValueError(
                f"onnxruntime_sessions applies to the onnxruntime backend only, not {self.backend}: remove it"
            )
        return self


class TlsSettings(_Strict):
    ca_file: ConfigPath = Field(description="CA certificate that signed the broker's certificate")
    cert_file: ConfigPath = Field(description="this device's client certificate")
    key_file: ConfigPath = Field(description="this device's private key (a secret: keep it 0600)")

    @model_validator(mode="after")
    def _exist(self) -> TlsSettings:
        for name in ("ca_file", "cert_file", "key_file"):
            if not getattr(self, name).is_file():
                raise ValueError(f"{name} {getattr(self, name)} does not exist")
        return self


class BrokerSettings(_Strict):
    host: str = Field("127.0.0.1", min_length=1, description="MQTT broker host")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port (8883 with TLS)")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive")
    session_expiry_s: int = Field(
        86400, ge=0, description="MQTT 5 session expiry: the broker keeps our session this long while we are away"
    )
    tls: TlsSettings | None = Field(None, description="client-certificate TLS; absent: plain TCP (loopback only)")


class OutboxSettings(_Strict):
    max_bytes: int = Field(256 * 2**20, ge=2**16, description="outbox size cap; the oldest events go first beyond it")
    max_age_s: float = Field(7 * 86400.0, gt=0, description="events older than this are dropped (counted) unsent")
    max_inflight: int = Field(64, ge=1, le=1000, description="QoS 1 messages awaiting PUBACK at once")


class HealthSettings(_Strict):
    interval_s: float = Field(10.0, ge=1.0, le=3600.0, description="how often `.../health` is published")
    prometheus_port: int | None = Field(
        None, ge=1, le=65535, description="serve the health figures as Prometheus text on 127.0.0.1:port; absent: off"
    )
    log_interval_s: float = Field(
        60.0, ge=0.0, le=86400.0, description="how often a one-line summary goes to the log; 0: never"
    )


class AggregateSettings(_Strict):
    interval_s: int = Field(60, ge=10, le=3600, description="length of one aggregation interval")


class OtaSettings(_Strict):
    trust_file: ConfigPath = Field(description="fleet public keys whose signatures are accepted (JSON/YAML)")
    golden_dir: ConfigPath = Field(description="golden frames (PNG) that staged models are checked on")
    fps_floor: float = Field(0.0, ge=0, description="frames/s a staged model must reach; 0: no floor")
    health_window_s: float = Field(30.0, gt=0, description="how long a switched update is watched before commit")
    health_min_frames: int = Field(10, ge=0, description="frames that must flow during the window")

    @model_validator(mode="after")
    def _usable(self) -> OtaSettings:
        TrustStore.from_file(self.trust_file)  # TrustFileError (a ValueError) names the file and the entry
        if not self.golden_dir.is_dir():
            raise ValueError(f"golden_dir {self.golden_dir} is not a folder")
        return self


class ZoneEditorSettings(_Strict):
    enabled: bool = Field(False, description="serve the zone editor on 127.0.0.1 (reach it through an SSH tunnel)")
    port: int = Field(8765, ge=0, le=65535, description="loopback port of the zone editor; 0 picks a free one")


class AgentConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGE_AGENT_", env_nested_delimiter="__", extra="forbid", frozen=True)

    device_id: Id = Field(description="this box's id: topic segment, MQTT identity and event_id prefix")
    site: Id = Field(description="site id: topic segment")
    groups: list[Id] = Field([], description="fleet groups this device belongs to (OTA targets)")
    models_dir: ConfigPath = Field(Path("/var/lib/edge-agent/models"), description="where model files are found")
    state_dir: ConfigPath = Field(Path("/var/lib/edge-agent"), description="outbox, audit log and OTA state")
    zones_file: ConfigPath | None = Field(None, description="zones and lines document (YAML)")
    model: ModelSettings = Field(description="the detector")
    tracker: TrackerConfig = Field(TrackerConfig(), description="multi-object tracker settings")
    cameras: list[CameraConfig] = Field(min_length=1, description="the cameras this box reads")
    broker: BrokerSettings = Field(BrokerSettings(), description="the central MQTT broker")
    outbox: OutboxSettings = Field(OutboxSettings(), description="durable event outbox")
    health: HealthSettings = Field(HealthSettings(), description="health messages and the local Prometheus endpoint")
    aggregates_only: dict[Id, AggregateSettings] = Field(
        {},
        description=(
            "cameras (by id) that publish only counts and durations per zone and interval, never a per-subject event"
        ),
    )
    ota: OtaSettings | None = Field(None, description="signed over-the-air updates; absent: OTA off")
    zone_editor: ZoneEditorSettings = Field(ZoneEditorSettings(), description="the technician's zone editor")
    subject_rotation_s: int = Field(3600, ge=60, le=3600, description="how often subject ids are re-salted")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment overrides the file (the file arrives as init kwargs); no .env files
        return env_settings, init_settings, file_secret_settings

    @model_validator(mode="after")
    def _unique_cameras(self) -> AgentConfig:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate camera ids {dupes}")
        unknown = sorted(set(self.aggregates_only) - set(ids))
        if unknown:
            raise ValueError(f"aggregates_only names unknown cameras {unknown}")
        if self.zone_editor.enabled and self.zones_file is None:
            raise ValueError("zone_editor needs zones_file: that is where its saves go")
        for camera in self.cameras:
            if camera.detect.motion and camera.detect.still_recheck_s >= self.tracker.lost_timeout_s:
                raise ValueError(
                    f"cameras[{camera.id}].detect.still_recheck_s ({camera.detect.still_recheck_s}) must be below "
                    f"tracker.lost_timeout_s ({self.tracker.lost_timeout_s}): people standing still would lose their tracks"
                )
        return self


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) in os.environ:
                return os.environ[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")

        return _VAR.sub(sub, value)
    return value


def format_validation_error(err: ValidationError) -> str:
    """The first error as `path.to[0].field: message`; a misspelled key with the key it is closest to there."""
    first = err.errors()[0]
    path = ""
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    hint = ""
    if first["type"] == "extra_forbidden" and first["loc"] and err.title in _ROOTS:
        known = _keys_at(_ROOTS[err.title], first["loc"][:-1])
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{path or '(top level)'}: {first['msg']}{hint}"


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys (names and aliases) of the model that `loc` leads to from `model`; none where it leaves models."""
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: the same model as the list's
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        inner = None if field is None else _model_in(field.annotation)
        if inner is None:
            return []
        model = inner
    return sorted({n for n in model.model_fields} | {f.alias for f in model.model_fields.values() if f.alias})


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside `annotation` (itself, or in a list, an Optional, an Annotated), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in typing.get_args(annotation) if (m := _model_in(arg)) is not None), None)


# the documents whose misspelled keys are matched against their neighbours' (ValidationError.title -> model)
_ROOTS: dict[str, type[BaseModel]] = {m.__name__: m for m in (AgentConfig, ZonesDoc, CameraConfig)}


def _from_environment(err: ValidationError) -> str:
    """Where the first error's value came from when an EDGE_AGENT_ variable set it (it overrides the file):
    ' (from the environment variable NAME, ...)', else ''."""
    names = [str(part) for part in itertools.takewhile(lambda p: not isinstance(p, int), err.errors()[0]["loc"])]
    for end in range(len(names), 0, -1):  # the variable may set the field or a mapping above it
        variable = "EDGE_AGENT_" + "__".join(names[:end]).upper()
        if variable in os.environ:
            return f" (from the environment variable {variable}, which overrides the file)"  # its value may be secret
    return ""


def load_config(path: Path) -> tuple[AgentConfig, ZonesDoc]:
    """Load, expand and validate the config and its zones; raise ConfigError naming the problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {describe_yaml_error(e)}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if "device_id" not in raw and {"zones", "lines"} & raw.keys():
        raise ConfigError(
            f"{path}: this is a zones document (it has zones/lines, no device_id), not an agent config: "
            "give the agent's config, whose zones_file names it (e.g. examples/vtest.yaml)"
        )
    try:
        with paths.relative_to(path.parent):
            config = AgentConfig(**_expand(raw, ""))
    except ValidationError as e:
        raise ConfigError(f"{path}: {format_validation_error(e)}{_from_environment(e)}") from e
    except SettingsError as e:  # an EDGE_AGENT_ variable for a list or mapping that is not JSON
        field = re.search(r'field "(\w+)"', str(e))
        variable = f"EDGE_AGENT_{field.group(1).upper()}" if field else "an EDGE_AGENT_ environment variable"
        raise ConfigError(
            f"{path}: {variable} is not valid JSON: a list or mapping set from the environment is JSON, e.g. "
            "EDGE_AGENT_CAMERAS='[{\"id\": \"plaza\", \"url\": \"rtsp://...\"}]'; or unset it and set the value "
            "in the file"
        ) from e
    zones = ZonesDoc()
    if config.zones_file is not None:
        try:
            zones = load_zones(config.zones_file)
        except OSError as e:
            raise ConfigError(f"{path}: zones_file: cannot read {config.zones_file}: {e.strerror}") from e
        except ValidationError as e:
            raise ConfigError(f"{config.zones_file}: {format_validation_error(e)}") from e
        except ValueError as e:  # not a mapping
            raise ConfigError(f"{config.zones_file}: {e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{config.zones_file}: not valid YAML: {describe_yaml_error(e)}") from e
    try:
        manifest = load_manifest(config.model.manifest)
        model_path = resolve_model_file(manifest, config.models_dir)
        verify_sha256(model_path, manifest.sha256)  # a torn copy or another model
        check_graph_input(manifest, model_path)  # a manifest written for another input size
        make_decoder(manifest)  # a decoder family this agent does not have
    except ModelError as e:
        raise ConfigError(f"{path}: model: {e}") from e
    check_zones(config, zones, manifest.classes, manifest.class_map, where=str(config.zones_file))
    return config, zones


def check_zones(
    config: AgentConfig, zones: ZonesDoc, class_names: list[str], class_map: dict[str, str], where: str
) -> None:
    """Zones must name configured cameras and classes the model knows (checked at load
    and for every zones update)."""
    unknown = sorted(zones.camera_ids() - {c.id for c in config.cameras})
    if unknown:
        raise ConfigError(
            f"{where}: zones refer to unknown cameras {unknown}; the config's cameras are "
            f"{sorted(c.id for c in config.cameras)}: correct the zones' camera, or add the camera to the config"
        )
    for camera in config.cameras:
        try:
            build_rules(zones, camera.id, class_names, class_map)
        except ValueError as e:
            raise ConfigError(f"{where}: camera {camera.id}: {e}") from e
