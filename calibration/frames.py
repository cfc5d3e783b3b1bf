"""Calibration frames: spread in time over every source, near-duplicates dropped.

A calibration set is only as good as its diversity: 100 consecutive frames of
a static plaza teach the quantizer one scene 100 times. So candidates are
taken at evenly spaced positions over each clip, and a frame whose small
grey thumbnail barely differs from one already kept is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# 32x24 grey thumbnails: large enough to see a person move across the plaza,
# small enough that sensor noise and codec flicker average out.
THUMB_WH = (32, 24)
# Mean absolute difference (0..255 grey levels) under which two thumbnails are the
# same scene. Measured on vtest.avi (10th-90th percentile): consecutive frames
# differ by 0.5-1.7, frames 0.5 s apart by 1.9-4.3, 1 s apart by 2.6-5.4.
DEFAULT_MIN_DIFFERENCE = 2.5
# Live cameras have no known length: read at most this many frames, keeping every `camera_stride`-th.
CAMERA_MAX_READ_FRAMES = 3000


class TooFewFramesError(ValueError):
    """The sources gave fewer usable (decodable, distinct) frames than calibration needs."""


@dataclass(frozen=True, slots=True)
class SampledFrame:
    """One kept frame: `image` BGR uint8 (h, w, 3), `index` 0-based position in `source`."""

    source: str
    index: int
    image: np.ndarray


def thumbnail(image: np.ndarray) -> np.ndarray:
    """float32 (24, 32) grey thumbnail of a BGR uint8 image, area-averaged."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, THUMB_WH, interpolation=cv2.INTER_AREA).astype(np.float32)


def drop_near_duplicates(frames: Sequence[SampledFrame], min_difference: float) -> list[SampledFrame]:
    """Keep frames in order, dropping any whose thumbnail differs from every kept one's by
    less than `min_difference` mean grey levels (so A, B, A' keeps A and B only)."""
    kept: list[SampledFrame] = []
    thumbs: list[np.ndarray] = []
    for frame in frames:
        thumb = thumbnail(frame.image)
        if all(np.abs(thumb - t).mean() >= min_difference for t in thumbs):
            kept.append(frame)
            thumbs.append(thumb)
    return kept


def spread_indices(frame_count: int, count: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Up to `count` 0-based indices evenly spread over [0, frame_count), none in `exclude`.

    Each slot takes its centre index or, if excluded, the nearest free index inside its slot.
    """
    count = min(count, frame_count)
    if count <= 0:
        return []
    slot = frame_count / count
    picked = []
    for k in range(count):
        lo, hi = int(k * slot), max(int(k * slot) + 1, int((k + 1) * slot))
        centre = (lo + hi - 1) // 2
        free = sorted((i for i in range(lo, min(hi, frame_count)) if i not in exclude), key=lambda i: abs(i - centre))
        if free:
            picked.append(free[0])
    return picked


def read_frames(source: str, indices: Sequence[int]) -> Iterator[SampledFrame]:
    """Decode the frames at sorted 0-based `indices` of a clip, sequentially (grab() skips
    without decoding to pixels; seeking is unreliable on AVI/MPEG-4 streams)."""
    wanted = sorted(set(indices))
    capture = cv2.VideoCapture(source)
    try:
        position = 0
        for index in wanted:
            while position < index and capture.grab():
                position += 1
            ok, image = capture.read()
            if not ok:
                return
            position += 1
            yield SampledFrame(source, index, image)
    finally:
        capture.release()


def frame_count_of(source: str) -> int:
    """Frames in a clip by its container, or 0 for a live source or an unreadable one."""
    capture = cv2.VideoCapture(source)
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def sample_frames(
    sources: Sequence[str],
    count: int,
    *,
    min_difference: float = DEFAULT_MIN_DIFFERENCE,
    exclude: dict[str, frozenset[int]] | None = None,
    camera_stride: int = 25,
    on_frame: Callable[[], None] | None = None,
) -> list[SampledFrame]:
    """About `count` distinct frames spread over `sources` (clip paths or camera URLs).

    Twice as many candidates as needed are read, evenly spaced over each clip
    (clips share `count` by their length); near-duplicates are dropped and the
    rest thinned evenly to `count`. `exclude` maps a source to frame indices
    that must not be used (e.g. the frames kept for evaluation). Raises
    TooFewFramesError, saying how many were found, when fewer than `count` remain.
    """
    exclude = exclude or {}
    lengths = {s: frame_count_of(s) for s in sources}
    total = sum(lengths.values())
    candidates: list[SampledFrame] = []
    for source in sources:
        skip = exclude.get(source, frozenset())
        if lengths[source] > 0:
            share = max(1, round(2 * count * lengths[source] / total))
            indices = spread_indices(lengths[source], share, skip)
        else:
            indices = [i for i in range(0, CAMERA_MAX_READ_FRAMES, camera_stride) if i not in skip][: 2 * count]
        for frame in read_frames(source, indices):
            candidates.append(frame)
            if on_frame is not None:
                on_frame()
    kept = drop_near_duplicates(candidates, min_difference)
    if len(kept) < count:
        raise TooFewFramesError(
            f"calibration needs {count} distinct frames; {len(candidates)} decodable and "
            f"{len(kept)} distinct frames found in {list(sources)}"
        )
    return [kept[i] for i in np.linspace(0, len(kept) - 1, count).round().astype(int)]
