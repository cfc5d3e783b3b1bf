"""A model update's manifest, unsigned, from the model the fleet ships: where devices download its files
(the graph, and the files an ONNX graph keeps its weights in, from beside it), the engine manifest that runs
it, and the golden reference, the model's own detections on the golden frames the devices hold
(`ota.golden_dir`), which each device checks the staged model against before it serves. `edge-fleet ota
sign` then signs it like any manifest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from pydantic import ValidationError

from agent.ota.errors import OtaError
from agent.ota.golden import reference_on
from agent.ota.manifest import Manifest
from agent.ota.slots import external_data
from agent.settings.errors import describe_validation_error
from engines.manifest import ModelError, load_manifest, resolve_model_file, sha256_of
from fleet.publish import FleetError


def model_manifest(
    model_json: Path,
    models_dir: Path,
    url: str,
    golden_dir: Path,
    *,
    version: int,
    device_ids: Sequence[str] = (),
    groups: Sequence[str] = (),
    valid_days: float = 7.0,
    min_agent_version: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The manifest document (validated); FleetError naming what is wrong. `url`: where the model's file is
    served; the files holding its external data are served beside it."""
    golden_dir = Path(golden_dir)
    if not golden_dir.is_dir():
        raise FleetError(f"{golden_dir}: no such folder: give the folder of PNG frames the devices hold as ota.golden_dir")
    names = sorted(p.name for p in golden_dir.glob("*.png"))
    if not names:
        raise FleetError(f"{golden_dir}: no golden frames (*.png): give the folder of PNG frames the devices hold as "
                         "their ota.golden_dir")  # fmt: skip
    try:
        model_file = resolve_model_file(load_manifest(model_json), models_dir)
        golden = reference_on(model_json, models_dir, golden_dir, names)  # checks the file's SHA-256 too
        sidecars = sorted(set(external_data(model_file).values()))
    except (ModelError, OtaError, ValueError, OSError) as exc:
        raise FleetError(str(exc)) from exc
    nested = [s for s in sidecars if Path(s).name != s]
    if nested:
        raise FleetError(f"{model_file.name} keeps weights in {nested}, not beside it: a device stages a model's files "
                         "in one folder; save the graph with its external data beside it")  # fmt: skip
    model = json.loads(Path(model_json).read_text())
    artifacts = [{"name": model["file"], "url": url, "sha256": model["sha256"], "size_bytes": model_file.stat().st_size}]
    for name in sidecars:
        path = model_file.parent / name
        artifacts.append({"name": name, "url": urljoin(url, name), "sha256": sha256_of(path), "size_bytes": path.stat().st_size})
    issued = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    document = {
        "target": {"device_ids": list(device_ids), "groups": list(groups)},
        "version": version,
        "issued_at": issued.isoformat(),
        "expires": (issued + timedelta(days=valid_days)).isoformat(),
        "min_agent_version": min_agent_version,
        "payload": {
            "kind": "model",
            "artifacts": artifacts,
            "model": model,
            "calibration_report": {},
            "golden": golden.model_dump(mode="json"),
        },
    }
    try:
        Manifest.model_validate(document)
    except ValidationError as exc:
        raise FleetError(f"invalid manifest: {describe_validation_error(exc)}") from exc
    return document
