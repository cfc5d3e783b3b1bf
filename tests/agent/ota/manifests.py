"""Valid manifest documents to break, the test device's identity, and an unchecked signer."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.ota.canonical import canonical_json_bytes
from fleet.publish import sign_bytes

DEVICE_ID = "box-0001"
GROUPS = ("site-paris", "canary")
AGENT_VERSION = "1.2.0"
NOW = datetime(2030, 1, 2, tzinfo=timezone.utc)

# the repository's own manifest of the light person detector is the model an update ships
LIGHT_MANIFEST: dict[str, Any] = json.loads((Path(__file__).resolve().parents[3] / "models" / "light_person_detector.json").read_text())
GRAPH_SHA256 = LIGHT_MANIFEST["sha256"]
GRAPH_SIZE_BYTES = LIGHT_MANIFEST["size_bytes"]

_MODEL_PAYLOAD: dict[str, Any] = {
    "kind": "model",
    "artifacts": [
        {
            "name": "light_person_detector.onnx",
            "url": "https://updates.example.com/models/light_person_detector.onnx",
            "sha256": GRAPH_SHA256,
            "size_bytes": GRAPH_SIZE_BYTES,
        }
    ],
    "model": LIGHT_MANIFEST,
    "calibration_report": {},
    "golden": {
        "frames": [
            {"frame": "vtest_0003.png", "boxes": [[10.0, 20.0, 50.5, 120.0, 0, 0.81], [300, 40, 340, 150, 0, 0.6]]}
        ],
        "iou_min": 0.5,
        "score_abs_tol": 0.1,
    },
}

PAYLOADS: dict[str, dict[str, Any]] = {
    "model": _MODEL_PAYLOAD,
    "zones": {"kind": "zones", "zones": {"zones": [{"id": "door", "camera": "cam1", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.6]], "intrusion": {}}]}},
    "config": {"kind": "config", "patch": {"tracker": {"lost_timeout_s": 2.0}}},
}


def manifest_doc(kind: str = "model", **overrides: Any) -> dict[str, Any]:
    """A valid manifest document of `kind` for DEVICE_ID at NOW, version 3; `overrides` replace top-level keys."""
    doc = {
        "target": {"device_ids": [DEVICE_ID], "groups": []},
        "version": 3,
        "issued_at": "2030-01-01T00:00:00Z",
        "expires": "2030-02-01T00:00:00Z",
        "min_agent_version": "1.0.0",
        "payload": copy.deepcopy(PAYLOADS[kind]),
    }
    doc.update(overrides)
    return doc


def sign_doc(doc: Any, key: Ed25519PrivateKey) -> bytes:
    """Sign a document's canonical bytes without validating it, as a buggy or hostile signer could."""
    return sign_bytes(canonical_json_bytes(doc), key)
