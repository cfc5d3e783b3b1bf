"""Where models and clips are: the same EDGE_AGENT_MODELS_DIR / EDGE_AGENT_MEDIA_DIR as the
tests (default ../shared beside the checkout), and the default model and clip."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.machine import REPO

DEFAULT_MANIFEST = REPO / "models" / "yolox_nano.json"


def models_dir() -> Path:
    return Path(os.environ.get("EDGE_AGENT_MODELS_DIR", REPO.parent / "shared" / "models")).resolve()


def media_dir() -> Path:
    return Path(os.environ.get("EDGE_AGENT_MEDIA_DIR", REPO.parent / "shared" / "media")).resolve()


def default_clip() -> Path:
    """vtest.avi: 768x576, 10 fps, PETS 2009 plaza (the stream the issue's targets are stated for)."""
    return media_dir() / "vtest.avi"
