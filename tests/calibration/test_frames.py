"""Frame sampling: spread in time, near-duplicates dropped, too few frames refused."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.frames import (
    SampledFrame,
    TooFewFramesError,
    drop_near_duplicates,
    sample_frames,
    spread_indices,
)


@pytest.mark.parametrize(
    ("frame_count", "count", "exclude", "expected"),
    [
        (10, 5, frozenset(), [0, 2, 4, 6, 8]),
        (10, 2, frozenset(), [2, 7]),
        (3, 5, frozenset(), [0, 1, 2]),  # more slots than frames: each frame once
        (10, 5, frozenset({0, 2}), [1, 3, 4, 6, 8]),  # excluded centre -> nearest free index in its slot
        (4, 2, frozenset({0, 1}), [2]),  # a slot with no free index yields nothing
        (0, 5, frozenset(), []),
    ],
)
def test_spread_indices(frame_count, count, exclude, expected):
    assert spread_indices(frame_count, count, exclude) == expected


def _image(value: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((48, 64, 3), value, np.float64)
    image[:24, :32] = 255 - value  # some structure
    return np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)


def test_near_duplicates_dropped_against_every_kept_frame():
    frames = [
        SampledFrame("a", 0, _image(40)),
        SampledFrame("a", 1, _image(40, noise=2.0, seed=1)),  # sensor noise: same scene
        SampledFrame("a", 2, _image(120)),
        SampledFrame("a", 3, _image(41)),  # back to the first scene
        SampledFrame("a", 4, _image(200)),
    ]
    kept = drop_near_duplicates(frames, min_difference=2.5)
    assert [f.index for f in kept] == [0, 2, 4]


def test_real_clip_sampling_is_spread_and_distinct(media_dir):
    clip = str(media_dir / "vtest.avi")
    frames = sample_frames([clip], 24, exclude={clip: frozenset(range(0, 795, 2))})
    indices = [f.index for f in frames]
    assert len(indices) == 24 and indices == sorted(set(indices))
    assert all(i % 2 == 1 for i in indices)  # excluded (even) frames never used
    assert indices[0] < 60 and indices[-1] > 730  # spread over the whole 795-frame clip
    assert all(f.image.shape == (576, 768, 3) and f.image.dtype == np.uint8 for f in frames)


def test_too_few_distinct_frames_says_how_many(tmp_path: Path):
    clip = tmp_path / "static.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(30):
        writer.write(_image(90))
    writer.release()
    with pytest.raises(TooFewFramesError, match=r"needs 10 distinct frames; \d+ decodable and 1 distinct"):
        sample_frames([str(clip)], 10)


def test_unreadable_source_finds_zero_frames(tmp_path: Path):
    with pytest.raises(TooFewFramesError, match="0 decodable and 0 distinct"):
        sample_frames([str(tmp_path / "missing.avi")], 4)
