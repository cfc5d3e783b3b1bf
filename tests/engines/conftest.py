"""Fixtures for engine tests: manifests of the real models and a small synthetic one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.manifest import ModelManifest


@pytest.fixture(scope="session")
def manifests_dir(repo_dir: Path) -> Path:
    return repo_dir / "models"


@pytest.fixture
def tiny_manifest_dict() -> dict:
    """A valid YOLOX manifest for a 32x16 input, strides 8 and 16 (8 + 2 = 10 rows), 3 classes."""
    return {
        "name": "tiny",
        "file": "tiny.onnx",
        "sha256": "0" * 64,
        "size_bytes": 1,
        "url": None,
        "license": "Apache-2.0",
        "decoder": "yolox",
        "precision": "fp32",
        "input": {
            "name": "images",
            "size_wh": [32, 16],
            "channel_order": "bgr",
            "mean": [0, 0, 0],
            "std": [1, 1, 1],
            "letterbox": "top_left",
            "pad_value": 114,
        },
        "outputs": {"output": [10, 8]},
        "strides": [8, 16],
        "classes": ["person", "car", "knife"],
        "class_map": {"person": "person", "car": "vehicle", "knife": "weapon"},
    }


@pytest.fixture
def tiny_manifest(tiny_manifest_dict: dict) -> ModelManifest:
    return ModelManifest.model_validate(tiny_manifest_dict)


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
