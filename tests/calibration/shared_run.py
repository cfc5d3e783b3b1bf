"""One short real calibration per test session, shared by tests/calibration and the
engine conformance suite (a plain cache: fixtures imported into two modules would run twice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration.pipeline import CalibrationConfig, calibrate

# Kept short for the default suite: 48 calibration and 40 evaluation frames, MinMax only
# (the CLI compares all three methods on 100 + 100 frames).
SHORT_RUN = dict(frames=48, eval_frames=40, methods=("minmax",), latency_rounds=2)

_RUNS: dict[str, tuple[Path, dict]] = {}


def calibrated_yolox(tmp_path_factory: pytest.TempPathFactory, repo_dir: Path, models_dir: Path, media_dir: Path) -> tuple[Path, dict]:
    """(output dir, report) of calibrating yolox_nano on vtest.avi with its ground truth."""
    if "yolox" not in _RUNS:
        out = tmp_path_factory.mktemp("int8_yolox")
        config = CalibrationConfig(ground_truth=media_dir / "vtest.gt.txt", **SHORT_RUN)
        report = calibrate(repo_dir / "models" / "yolox_nano.json", models_dir, [str(media_dir / "vtest.avi")], out, config)
        _RUNS["yolox"] = (out, report)
    return _RUNS["yolox"]
