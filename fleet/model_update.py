"""A model update's manifest, unsigned, from the model the fleet ships: where devices download its file,
the engine manifest that runs it, and the golden reference, the model's own detections on the golden
frames the devices hold (`ota.golden_dir`), which each device checks the staged model against before
it serves. `edge-fleet ota sign` then signs it like any manifest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
from pydantic import ValidationError

from agent.ota.golden import GOLDEN_CONFIDENCE, GOLDEN_NMS_IOU, reference_of
from agent.ota.manifest import Manifest
from agent.settings.errors import describe_validation_error
from engines.detector import Detector
from engines.manifest import ModelError, resolve_model_file
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
    """The manifest document (validated); FleetError naming what is wrong."""
    names = sorted(p.name for p in Path(golden_dir).glob("*.png")) if Path(golden_dir).is_dir() else []
    if not names:
        raise FleetError(f"{golden_dir}: no golden frames (*.png): give the folder of PNG frames the devices hold as "
                         "their ota.golden_dir")  # fmt: skip
    try:
        with Detector.open(model_json, models_dir, confidence=GOLDEN_CONFIDENCE, nms_iou=GOLDEN_NMS_IOU) as detector:
            found = []
            for name in names:
                image = cv2.imread(str(golden_dir / name), cv2.IMREAD_COLOR)
                if image is None:
                    raise FleetError(f"{golden_dir / name}: not a readable image: remove it or replace it")
                found.append(detector.detect([image])[0])
            model_file = resolve_model_file(detector.manifest, models_dir)
    except (ModelError, OSError) as exc:
        raise FleetError(str(exc)) from exc
    model = json.loads(Path(model_json).read_text())
    issued = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    document = {
        "target": {"device_ids": list(device_ids), "groups": list(groups)},
        "version": version,
        "issued_at": issued.isoformat(),
        "expires": (issued + timedelta(days=valid_days)).isoformat(),
        "min_agent_version": min_agent_version,
        "payload": {
            "kind": "model",
            "artifacts": [
                {"name": model["file"], "url": url, "sha256": model["sha256"], "size_bytes": model_file.stat().st_size}
            ],
            "model": model,
            "calibration_report": {},
            "golden": reference_of(found, names).model_dump(mode="json"),
        },
    }
    try:
        Manifest.model_validate(document)
    except ValidationError as exc:
        raise FleetError(f"invalid manifest: {describe_validation_error(exc)}") from exc
    return document
