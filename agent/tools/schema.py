"""JSON Schemas of everything the agent publishes, generated from the pydantic models,
and which model each published topic carries."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from agent.ota.manifest import Manifest, SignedManifest
from agent.ota.report import OtaStatus
from agent.wire.envelope import Envelope
from agent.wire.status import DoctorProbe, Health, Status

# published as {name}.schema.json
SCHEMAS: dict[str, type[BaseModel]] = {
    "event": Envelope,
    "status": Status,
    "health": Health,
    "ota_status": OtaStatus,
    "ota_manifest": SignedManifest,
    "ota_manifest_body": Manifest,  # what `ota_manifest.manifest` holds as a string, and what an operator signs
    "doctor_probe": DoctorProbe,
}
# Topic suffix under `edge/v1/{site}/{device}/` -> the model its messages are; `+`
# stands for one level, the first match wins. Every topic a device publishes on is
# here (the egress test holds every message crossing a test broker to it).
TOPICS: dict[str, type[BaseModel]] = {
    "events/+": Envelope,
    "status": Status,
    "health": Health,
    "ota/status": OtaStatus,
    "doctor": DoctorProbe,
}
# What the fleet sends to devices: `.../{device}/ota/{kind}` and
# `edge/v1/{site}/groups/{group}/ota/{kind}` (the group is one more level).
INBOUND_TOPICS: dict[str, type[BaseModel]] = {"ota/+": SignedManifest, "+/ota/+": SignedManifest}


def schemas() -> dict[str, dict]:
    """Each message's JSON Schema (draft 2020-12, as pydantic writes it) with an `$id`. A message's
    `schema` (its name and version) is required: the agent always sends it, and a subscriber
    should refuse what lacks it (pydantic leaves it optional, having a default)."""
    out = {}
    for name, model in SCHEMAS.items():
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"urn:edge-agent:schema:{name}"}
        schema |= model.model_json_schema(by_alias=True)
        if "schema" in schema["properties"]:
            schema["required"] = ["schema", *(f for f in schema.get("required", []) if f != "schema")]
        out[name] = schema
    return out


def model_for_topic(topic: str, table: dict[str, type[BaseModel]] = TOPICS) -> type[BaseModel] | None:
    """The model a message on `topic` must validate against (from `table`); None for
    a topic the table does not have."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[:2] != ["edge", "v1"]:
        return None
    suffix = parts[4:]
    for pattern, model in table.items():
        expected = pattern.split("/")
        if len(expected) == len(suffix) and all(e in ("+", s) for e, s in zip(expected, suffix)):
            return model
    return None


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
