"""JSON Schemas of everything the agent publishes, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

from agent.events import Envelope
from agent.status import Health, Status

SCHEMAS = {"event": Envelope, "status": Status, "health": Health}


def schemas() -> dict[str, dict]:
    return {name: model.model_json_schema(by_alias=True) for name, model in SCHEMAS.items()}


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
