"""Fixtures for calibration tests."""

from __future__ import annotations

import pytest

from tests.calibration.shared_run import calibrated_yolox


@pytest.fixture(scope="session")
def yolox_int8(tmp_path_factory, repo_dir, models_dir, media_dir):
    """(output dir, report) of the session's one real calibration."""
    return calibrated_yolox(tmp_path_factory, repo_dir, models_dir, media_dir)
