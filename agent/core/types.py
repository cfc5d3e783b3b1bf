"""One frozen type per pipeline stage; arrays per field, units in names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.core.geometry import feet
from engines.types import Detections

__all__ = ["Detections", "Frame", "Tracks"]


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded camera frame. The image never leaves the box.

    pts_ns: presentation time on the camera's timeline, UTC nanoseconds
    (file sources anchor the media clock at the wall time they opened).
    image: uint8 (H, W, 3), BGR.
    """

    camera_id: str
    seq: int
    pts_ns: int
    image: np.ndarray

    @property
    def size_wh(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class Tracks:
    """Confirmed tracks of one frame, rows aligned with `detections`.

    track_id: int64 (N,), unique per camera, never reused.
    ended: int64 (M,), ids of tracks that ended at this frame; every rule
    evicts its state for them.
    size_wh: (width, height) of the frame in pixels, to normalise geometry.
    seen: every detection of this frame, confirmed as a track or not (what crowd counts read: in a
    crowd, tracks confirm too slowly); None on a frame the detector did not see (predicted boxes).
    """

    camera_id: str
    pts_ns: int
    detections: Detections
    track_id: np.ndarray
    ended: np.ndarray
    size_wh: tuple[int, int]
    seen: Detections | None = None
    _anchors: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.track_id.shape != (len(self.detections),):
            raise ValueError(
                f"track_id {self.track_id.shape} misaligned with {len(self.detections)} detections"
            )

    def __len__(self) -> int:
        return len(self.track_id)

    def anchors_norm(self) -> np.ndarray:
        """Bottom-centre anchor points (float32 (N, 2), `geometry.feet`), normalised 0..1 to the frame size;
        read-only, computed once (every zone and line of the camera reads them)."""
        anchors = self._anchors
        if anchors is None:
            anchors = feet(self.detections.xyxy, self.size_wh)
            anchors.flags.writeable = False
            object.__setattr__(self, "_anchors", anchors)
        return anchors
