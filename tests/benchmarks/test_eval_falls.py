"""`benchmarks.eval_falls` runs the real pipeline over a folder of labelled clips and records what the
rules saw; `benchmarks.tune_falls` replays the rule on the recording. Plumbing on one short clip; the
figures come from `make eval-falls eval-variants tune-falls` on all 62."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLIP = "le2i_coffee01_v01"  # 157 frames, a fall at frames 48-80


def run(module: str, args: list[str], models_dir: Path) -> str:
    env = os.environ | {"EDGE_AGENT_MODELS_DIR": str(models_dir)}
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_eval_then_tune_on_one_clip(media_dir, models_dir, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for suffix in (".mp4", ".txt"):
        (clips / f"{CLIP}{suffix}").symlink_to(media_dir / "fall" / f"{CLIP}{suffix}")
    out = run("benchmarks.eval_falls", ["--clips", str(clips), "--cache", str(tmp_path / "cache"),
                                        "--json", str(tmp_path / "falls.json")], models_dir)  # fmt: skip
    assert "coffee01" in out and "added by person_down" in out
    result = json.loads((tmp_path / "falls.json").read_text())
    assert result["rooms"]["all"]["detected"] == 1 and result["rooms"]["all"]["false_alarm_clips"] == []
    assert result["cost"]["person_down_ms_per_frame"] > 0
    assert (tmp_path / "cache" / f"{CLIP}.npz").is_file()

    # the same recording stands in for another form of the clip (make eval-variants records those): plumbing
    (tmp_path / "falls_mirrored").symlink_to(tmp_path / "cache")
    run("benchmarks.tune_falls", ["--cache", str(tmp_path / "cache"), "--labels", str(clips),
                                  "--augment", str(tmp_path / "falls_mirrored"), str(clips),
                                  "--json", str(tmp_path / "tuning.json")], models_dir)  # fmt: skip
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    assert tuning["forms"] == ["recorded", "falls_mirrored"]
    assert tuning["held_out"]["coffee01"]["fall_clips"] == 1 and tuning["held_out"]["coffee01"]["missed"] == []
    assert tuning["held_out_other_forms"]["coffee01"]["fall_clips"] == 1
    assert set(tuning["shipped"]) == set(tuning["grid"])
    assert tuning["shipped_on_all_rooms_not_held_out"]["fall_clips"] == 1

    def refused(*augment: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.tune_falls", "--cache", str(tmp_path / "cache"), "--labels", str(clips),
             *augment],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode != 0
        return done.stderr

    stderr = refused("--augment", str(tmp_path / "nothing"), str(clips))
    assert f"no recordings with labels in {tmp_path / 'nothing'}" in stderr and "run `make eval-variants` first" in stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "falls_mirrored").symlink_to(tmp_path / "cache")
    stderr = refused("--augment", str(tmp_path / "falls_mirrored"), str(clips),
                     "--augment", str(tmp_path / "other" / "falls_mirrored"), str(clips))  # fmt: skip
    assert "two recordings folders have the same name" in stderr
    stderr = refused("--augment", str(tmp_path / "falls_mirrored"), str(tmp_path))  # labels not there
    assert f"no recordings with labels in {tmp_path / 'falls_mirrored'}" in stderr


def test_eval_names_a_folder_without_labels(models_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.eval_falls", "--clips", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and f"no clip with a .txt label beside it in {tmp_path}" in done.stderr
