"""Crowd counts on real footage through the real pipeline (reader, yolox_nano on the frame and its tiles,
rules, envelopes), read back from the zone_occupancy events of a zone in the crowded mode: a short stretch of
the Mall clip from the held-out (second) half of the time split, and one of vtest.avi's sparse scene."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from agent.analytics import crowd
from agent.analytics.crowd import CrowdedSettings
from benchmarks.eval_crowd import counts_over_clip, metrics, mot_counts

pytestmark = pytest.mark.integration

FIRST, FRAMES = 700, 16  # consecutive frames (8 s at the clip's 2 fps), about 210 detector images in all


def counted_stretch(source: Path, first: int, frames: int, fps: int, tmp_path: Path) -> tuple[list[int], list[float]]:
    """The crowded mode's count and the zone's coverage at each of `frames` frames of `source` from frame
    `first`, cut into a clip of its own at `fps` and run through the real pipeline."""
    clip = tmp_path / f"{source.stem}_part.avi"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(source), "-vf",
         f"select='between(n,{first},{first + frames - 1})',setpts=N/({fps}*TB)", "-r", str(fps), "-c:v", "mjpeg",
         "-q:v", "2", str(clip)],
        check=True,
    )  # fmt: skip
    counted, coverage = counts_over_clip(clip, CrowdedSettings(), cache=None)
    assert len(counted) == frames
    return counted, coverage


def test_mall_counts_within_the_error_bound(media_dir: Path, tmp_path: Path) -> None:
    with open(media_dir / "crowd" / "mall_1001-2000_counts.csv", newline="") as f:
        truth = [int(r["head_count"]) for r in csv.DictReader(f)][FIRST : FIRST + FRAMES]
    counted, _ = counted_stretch(media_dir / "crowd" / "mall_1001-2000_2fps.mp4", FIRST, FRAMES, 2, tmp_path)
    m = metrics(counted, truth)
    print(f"mall frames {FIRST}..{FIRST + FRAMES - 1}: MRE {m['mre']:.1%} bias {m['bias']:+.1%} "
          f"(truth mean {m['truth_mean']:.1f}, counted {m['predicted_mean']:.1f})")  # fmt: skip
    assert m["mre"] <= 0.15 and abs(m["bias"]) <= 0.15  # the Mall target (MRE); bias looser on 16 frames


def test_a_sparse_scene_in_the_crowded_mode_is_counted_from_its_boxes(media_dir: Path, tmp_path: Path) -> None:
    """vtest.avi, 6-8 people far apart: the boxes cover a few percent of the frame, under `PACKED`, so the area
    estimate (fitted on crowds: about twice the people here) does not take over."""
    first, frames = 100, 30  # 3 s
    truth = [c for _, c in mot_counts(media_dir / "vtest.gt.txt")][first : first + frames]
    counted, coverage = counted_stretch(media_dir / "vtest.avi", first, frames, 10, tmp_path)
    m = metrics(counted, truth)
    print(f"vtest frames {first}..{first + frames - 1}: bias {m['bias']:+.1%} (truth mean {m['truth_mean']:.1f}, "
          f"counted {m['predicted_mean']:.1f}), coverage up to {max(coverage):.3f}")  # fmt: skip
    assert max(coverage) < crowd.PACKED  # 0.040 measured
    # measured: the boxes +48 % (9.6 for 6.5: tiles split a few near people in two); with the area estimate
    # taking over (PACKED 0) +186 % (18.6)
    assert m["bias"] <= 0.6
