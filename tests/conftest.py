"""Shared fixtures. Models and clips are data, never committed: they are found
through EDGE_AGENT_MODELS_DIR / EDGE_AGENT_MEDIA_DIR (the Makefile and .ci/run
point them at ../shared), falling back to ../shared beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Fixture modules, registered once here (not imported into test modules).
pytest_plugins = ["tests.support.services", "tests.support.browser", "tests.agent.ota.device", "tests.agent.ota.http_server",
                  "tests.support.logs"]

# Fixtures that start a real service or load the real model: a test using one is an integration test,
# marked so by `pytest_collection_modifyitems` wherever it lives (`pytest -m "not integration"`: the fast, pure run).
SERVICE_FIXTURES = frozenset({"mosquitto", "mosquitto_session", "rtsp_server", "subscriber", "browser", "small_disk",
                              "golden", "device"})  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts or SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _data_dir(env: str, default: Path) -> Path:
    path = Path(os.environ.get(env, default)).resolve()
    if not path.is_dir():
        raise pytest.UsageError(f"{env}={path} is not a directory: point it at the shared data")
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return _data_dir("EDGE_AGENT_MODELS_DIR", REPO.parent / "shared" / "models")


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return _data_dir("EDGE_AGENT_MEDIA_DIR", REPO.parent / "shared" / "media")


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO
