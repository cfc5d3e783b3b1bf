"""An OTA config update is a JSON merge patch on the agent's config: which keys may change while
the agent runs, how the patch merges, and a check of its values that needs no device's config (what
`edge-fleet ota sign` runs before an operator publishes; the device checks the patched config whole)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from agent.settings.config import AgentConfig, ConfigError

# Top-level config keys an update may change while running (None: any sub-key); the rest
# (broker, cameras, state_dir...) need a restart and are refused.
LIVE_CONFIG_KEYS: dict[str, frozenset[str] | None] = {
    "model": frozenset({"confidence", "nms_iou", "classes"}),
    "tracker": None,
}


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


def check_live_keys(patch: Mapping[str, Any]) -> None:
    """ConfigError unless every key of `patch` can be applied without a restart."""
    for key, value in patch.items():
        if key not in LIVE_CONFIG_KEYS:
            raise ConfigError(f"config patch: {key!r} cannot change while running (live keys: {sorted(LIVE_CONFIG_KEYS)})")
        allowed = LIVE_CONFIG_KEYS[key]
        if allowed is not None and isinstance(value, Mapping) and set(value) - allowed:
            raise ConfigError(f"config patch: {key}.{sorted(set(value) - allowed)} cannot change while running")


def check_patch_values(patch: Mapping[str, Any]) -> None:
    """ConfigError naming the first key of `patch` that is not a config key, or whose value its field's type
    and bounds refuse. Each value is checked on its own: how the values combine with the rest of a
    device's config is the device's check (`patched_config`)."""

    def walk(model: type[BaseModel], values: Mapping[str, Any], where: str) -> None:
        for key, value in values.items():
            field = model.model_fields.get(key)
            if field is None:
                raise ConfigError(f"config patch: {where}{key}: not a config key (known: {sorted(model.model_fields)})")
            kind = field.annotation
            if isinstance(value, Mapping) and isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind, value, f"{where}{key}.")
                continue
            try:
                TypeAdapter(Annotated[(kind, *field.metadata)] if field.metadata else kind).validate_python(value)
            except ValidationError as e:
                raise ConfigError(f"config patch: {where}{key}: {e.errors()[0]['msg']}") from None

    walk(AgentConfig, patch, "")
