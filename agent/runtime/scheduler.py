"""Which frames go through the detector, and on which part of the frame.

Per camera (`DetectSettings`): a detect rate apart from the frame rate, motion
gating on the analysis downscale, and a crop covering the camera's zones and
lines. Per batch (one frame per camera, from the frame loop): the frames that
want the detector are taken most overdue first, as many as the detector's
credit pays for at the measured cost per image. The credit grows by a share
of the cameras' time (the newest pts seen: wall time for live cameras and
real-time replays, media time for a fast replay), up to `DETECT_BUDGET_S`,
and each batch spends what it took: a batch stays short (latency). The share
adapts to the box: it starts at `DETECT_SHARE`, rises while every live camera
keeps up and falls fast while one falls behind (its frames wait in its queue),
between `SHARE_RANGE`, so the detector takes what decoding, tracking and the
rules leave, on a 2-core CPU as on a GPU. The frames not taken are deferred to their
camera's next frame, so under load the busiest cameras' detect rate falls
first; frames are dropped (by the readers' bounded queues) only when even that
is not enough. A camera whose rules need fresh boxes, and one without a detect
rate (the default: every frame), is detected at every frame, ahead of the
budget. Frames the detector does not see get the tracker's predicted boxes
(`ByteTracker.predict`), so the rules still see every frame.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from agent.core.types import Detections, Frame
from agent.core.units import NS_PER_S
from agent.settings.detect import DetectSettings
from agent.settings.zones import ZonesDoc

# p99 frame to event <= 100 ms: a frame waits for at most the batch in inference before
# its own, its own batch, then tracking, rules and the outbox (a few ms each). Two batches
# of 40 ms leave 20 ms for the rest.
DETECT_BUDGET_S = 0.04
# Share of the cameras' time the detector may take, to start with. On a 2-core box with 16 cameras,
# decoding (~1.5 ms a frame) and tracking, rules and the outbox (~3 ms a frame) take about 0.8 of a
# core; inference runs on both cores, so half the wall time in inference is about one core.
DETECT_SHARE = 0.5
# The share adapts within these: up by _SHARE_RISE_PER_S per second of camera time while every live
# camera keeps up, halved every _SHARE_HALVING_S while one falls behind (additive increase,
# multiplicative decrease, as TCP's congestion window: it settles just under what the box can do).
SHARE_RANGE = (0.2, 0.9)
_SHARE_RISE_PER_S = 0.1
_SHARE_HALVING_S = 1.0
_COST_EMA = 0.2  # weight of the newest batch in the cost per image
_RATE_WINDOW_S = 5.0  # as the readers' fps window
_UNSEEN_S = 3600.0  # how overdue a camera the detector has not seen yet (or since its clock restarted) counts

# A crop is used when it enlarges people by at least this much: a smaller gain shifts the image
# under the model's grid for nothing (on vtest, a crop of y 0.05..1 moved the loitering count by 2).
MIN_CROP_GAIN = 1.25

Region = tuple[int, int, int, int]
"""x0, y0, x1, y1 in pixels of the frame: the part given to the detector."""


def zones_region(zones: ZonesDoc, camera_id: str, margin: float) -> tuple[float, float, float, float] | None:
    """Normalised (x0, y0, x1, y1) covering the camera's zones and lines, grown by `margin` of the
    frame on every side and clipped to it; None when the camera has none (the whole frame)."""
    points = [p for z in zones.zones if z.camera == camera_id for p in z.polygon]
    points += [p for line in zones.lines if line.camera == camera_id for p in line.points]
    if not points:
        return None
    xy = np.asarray(points, np.float64)
    lo, hi = np.clip(xy.min(axis=0) - margin, 0.0, 1.0), np.clip(xy.max(axis=0) + margin, 0.0, 1.0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def region_px(region: tuple[float, float, float, float] | None, size_wh: tuple[int, int]) -> Region | None:
    """A normalised region in pixels of a frame of `size_wh` (outward to whole pixels); None for the whole
    frame, and for a region that would not enlarge people by MIN_CROP_GAIN in a square model input."""
    if region is None:
        return None
    w, h = size_wh
    x0, y0 = math.floor(region[0] * w), math.floor(region[1] * h)
    x1, y1 = max(math.ceil(region[2] * w), x0 + 1), max(math.ceil(region[3] * h), y0 + 1)
    # the model's input is the same size either way: a crop only buys resolution, which in a square
    # input is the ratio of the longest sides
    return None if MIN_CROP_GAIN * max(x1 - x0, y1 - y0) > max(w, h) else (x0, y0, x1, y1)


def crop(image: np.ndarray, region: Region | None) -> np.ndarray:
    """The region of a uint8 (H, W, 3) image, as a view (no copy)."""
    if region is None:
        return image
    x0, y0, x1, y1 = region
    return image[y0:y1, x0:x1]


def uncrop(detections: Detections, region: Region | None) -> Detections:
    """Detections made on `crop(image, region)` in pixels of the whole image."""
    if region is None:
        return detections
    offset = np.array([region[0], region[1], region[0], region[1]], np.float32)
    return Detections(detections.xyxy + offset, detections.confidence, detections.class_id)


def grey_region(small_bgr: np.ndarray, region: Region | None, size_wh: tuple[int, int]) -> np.ndarray:
    """The region (in pixels of a frame of `size_wh`) of that frame's downscale uint8 (h, w, 3), in grey."""
    if region is not None:
        h, w = small_bgr.shape[:2]
        sx, sy = w / size_wh[0], h / size_wh[1]
        x0, y0 = int(region[0] * sx), int(region[1] * sy)
        small_bgr = small_bgr[y0 : max(math.ceil(region[3] * sy), y0 + 1), x0 : max(math.ceil(region[2] * sx), x0 + 1)]
    return cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY)


def motion_share(reference: np.ndarray, grey: np.ndarray, pixel_delta: int) -> float:
    """Share (0..1) of the pixels of two uint8 grey images of one size that differ by more than pixel_delta."""
    changed = cv2.absdiff(reference, grey) > pixel_delta
    return float(np.count_nonzero(changed)) / max(changed.size, 1)


class _Rate:
    """Events per second over the last few seconds of monotonic time; safe to read from another thread."""

    def __init__(self) -> None:
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def add(self, now: float) -> None:
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def per_s(self, now: float) -> float:
        with self._lock:
            self._trim(now)
            return len(self._times) / _RATE_WINDOW_S

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - _RATE_WINDOW_S:
            self._times.popleft()


@dataclass
class CameraSchedule:
    """One camera's detect timing: pure decisions on pts, plus the motion reference."""

    settings: DetectSettings
    next_ns: int | None = None  # pts from which the next detection is due
    last_ns: int | None = None  # pts of the last detection
    reference: np.ndarray | None = None  # grey region of the downscale at the last detection

    def priority(self, pts_ns: int, grey: np.ndarray | None, fresh: bool, has_tracks: bool) -> float | None:
        """How overdue (s) this frame's detection is; None: predict it instead. inf (detect it whatever
        the budget) when the rules need fresh boxes or the camera has no detect rate (every frame).

        `grey`: the detected region of the analysis downscale (motion gating only)."""
        if fresh:
            return math.inf
        every_frame = self.settings.fps is None
        if self.next_ns is None or self.last_ns is None or pts_ns < self.last_ns:
            return math.inf if every_frame else _UNSEEN_S  # first frame, or a new timeline (reconnect, loop)
        if pts_ns < self.next_ns:
            return None
        s = self.settings
        if s.motion and grey is not None and self.reference is not None and self.reference.shape == grey.shape:
            still = motion_share(self.reference, grey, s.motion_pixel_delta) < s.motion_min_area
            recheck_ns = (s.still_recheck_s if has_tracks else s.empty_recheck_s) * NS_PER_S
            if still and pts_ns - self.last_ns < recheck_ns:
                return None
        return math.inf if every_frame else (pts_ns - self.next_ns) / NS_PER_S

    def waiting(self, pts_ns: int, fresh: bool) -> bool:
        """Whether this frame is before its camera's next detection (`priority` is None whatever the motion)."""
        return (
            not fresh
            and self.next_ns is not None
            and self.last_ns is not None
            and self.last_ns <= pts_ns < self.next_ns
        )

    def detected(self, pts_ns: int, grey: np.ndarray | None) -> None:
        """The frame at pts_ns went to the detector: the next is due one interval on, keeping the phase
        unless that is already past (a long gap: motion gating, load)."""
        interval_ns = 0 if self.settings.fps is None else round(NS_PER_S / self.settings.fps)
        restart = self.next_ns is None or self.last_ns is None or pts_ns < self.last_ns
        phase_ns = pts_ns if restart else self.next_ns + interval_ns
        self.next_ns = phase_ns if phase_ns > pts_ns else pts_ns + interval_ns
        self.last_ns = pts_ns
        self.reference = grey


class DetectScheduler:
    """The frame loop's choice of frames for the detector (one thread; `detect_fps` from any)."""

    def __init__(
        self,
        settings: dict[str, DetectSettings],
        budget_s: float = DETECT_BUDGET_S,
        share: float = DETECT_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cameras = {cid: CameraSchedule(s) for cid, s in settings.items()}
        self._rates = {cid: _Rate() for cid in settings}
        self._budget_s, self.share, self._clock = budget_s, share, clock
        self._cost_s: float | None = None  # detector seconds per image, smoothed
        self._credit_s = budget_s  # detector seconds the next batch may take
        self._newest_ns: int | None = None  # the newest pts seen: the cameras' clock that earns credit
        self._regions: dict[str, tuple[int, tuple[float, float, float, float] | None]] = {}

    def wants_downscale(self, camera_id: str, pts_ns: int, fresh: bool) -> bool:
        """Whether this frame needs the analysis downscale before detection: motion gating, on a frame
        that is due (a frame before its camera's next detection is predicted without looking at it)."""
        camera = self._cameras[camera_id]
        return camera.settings.motion and not camera.waiting(pts_ns, fresh)

    def region(self, camera_id: str, zones: ZonesDoc, size_wh: tuple[int, int]) -> Region | None:
        """Where to detect on this camera's frame: its zones' crop, or None for the whole frame."""
        settings = self._cameras[camera_id].settings
        if not settings.crop_to_zones:
            return None
        cached = self._regions.get(camera_id)
        if cached is None or cached[0] != id(zones):  # ZonesDoc is frozen: a swap is a new object
            cached = (id(zones), zones_region(zones, camera_id, settings.crop_margin))
            self._regions[camera_id] = cached
        return region_px(cached[1], size_wh)

    def choose(
        self,
        frames: Sequence[Frame],
        greys: Sequence[np.ndarray | None],
        fresh: Sequence[bool],
        has_tracks: Sequence[bool],
        behind: bool = False,
    ) -> list[int]:
        """Indexes of the frames (one per camera) to detect now, most overdue first, within the budget;
        their cameras are marked detected. greys: the detected region of each frame's downscale, in grey;
        behind: whether a live camera's frames wait to be taken (`FrameQueue.behind`: the detector's share falls)."""
        wanted = []
        for i, frame in enumerate(frames):
            p = self._cameras[frame.camera_id].priority(frame.pts_ns, greys[i], fresh[i], has_tracks[i])
            if p is not None:
                wanted.append((p, i))
        # most overdue first; among equals, the one detected longest ago (no camera order favoured)
        wanted.sort(key=lambda pi: (-pi[0], self._cameras[frames[pi[1]].camera_id].last_ns or 0))
        newest = max(f.pts_ns for f in frames)
        earned_s = 0.0 if self._newest_ns is None else max(newest - self._newest_ns, 0) / NS_PER_S
        low, high = SHARE_RANGE
        if behind:
            self.share = max(low, self.share * 0.5 ** (earned_s / _SHARE_HALVING_S))
        else:
            self.share = min(high, self.share + _SHARE_RISE_PER_S * earned_s)
        self._credit_s = min(self._budget_s, self._credit_s + self.share * earned_s)
        self._newest_ns = newest if self._newest_ns is None else max(self._newest_ns, newest)
        # any credit left pays for one image at least, so a cost estimate above the budget (a slow
        # first run) is measured again rather than blocking the detector for good
        room = 0 if self._credit_s <= 0 else 1 if self._cost_s is None else max(1, int(self._credit_s / max(self._cost_s, 1e-6)))
        chosen = sorted(i for k, (p, i) in enumerate(wanted) if k < room or p == math.inf)
        now = self._clock()
        for i in chosen:
            self._cameras[frames[i].camera_id].detected(frames[i].pts_ns, greys[i])
            self._rates[frames[i].camera_id].add(now)
        return chosen

    def measured(self, seconds: float, images: int) -> None:
        """The detector took `seconds` for `images` images: the cost per image that sizes the budget."""
        cost = seconds / max(images, 1)
        self._credit_s -= seconds
        self._cost_s = cost if self._cost_s is None else (1 - _COST_EMA) * self._cost_s + _COST_EMA * cost

    def detect_fps(self) -> dict[str, float]:
        """Detections per second of each camera over the last few seconds."""
        now = self._clock()
        return {cid: rate.per_s(now) for cid, rate in self._rates.items()}
