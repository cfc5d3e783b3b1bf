"""The detect scheduler: which frames go to the detector, and where on the frame (pure, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from agent.analytics.camera import CameraRules
from agent.core.types import Detections, Frame
from agent.io.prometheus import render
from agent.runtime.scheduler import (
    SHARE_RANGE,
    CameraSchedule,
    DetectScheduler,
    crop,
    grey_region,
    motion_share,
    region_px,
    uncrop,
    zones_region,
)
from agent.settings.config import AgentConfig
from agent.settings.detect import DetectSettings
from agent.settings.zones import ZonesDoc
from agent.wire.status import Health, to_bytes
from tests.agent.test_status_prometheus import health as status_health

MS = 1_000_000
FRAME_NS = 100 * MS  # 10 fps


def _detected_frames(schedule: CameraSchedule, n: int, grey=None, has_tracks=True, start_ns=0) -> list[int]:
    """Indexes of the frames (10 fps from start_ns) that the schedule sends to the detector."""
    out = []
    for k in range(n):
        pts = start_ns + k * FRAME_NS
        if schedule.priority(pts, grey, fresh=False, has_tracks=has_tracks) is not None:
            schedule.detected(pts, grey)
            out.append(k)
    return out


def test_every_frame_by_default():
    assert _detected_frames(CameraSchedule(DetectSettings()), 6) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(("fps", "expected"), [(5.0, [0, 2, 4, 6, 8]), (2.5, [0, 4, 8]), (4.0, [0, 3, 5, 8])])
def test_a_detect_rate_apart_from_the_frame_rate_keeps_its_phase(fps, expected):
    # 4 fps on a 10 fps camera: due at 0, 250, 500, 750 ms -> frames 0, 3, 5, 8 (4 a second on average)
    assert _detected_frames(CameraSchedule(DetectSettings(fps=fps)), 10) == expected


def test_rules_needing_fresh_boxes_get_every_frame():
    schedule = CameraSchedule(DetectSettings(fps=1.0))
    schedule.detected(0, None)
    assert schedule.priority(FRAME_NS, None, fresh=True, has_tracks=True) == float("inf")
    assert schedule.priority(FRAME_NS, None, fresh=False, has_tracks=True) is None


def test_a_restarted_clock_is_detected_at_once():
    schedule = CameraSchedule(DetectSettings(fps=1.0))
    schedule.detected(10 * FRAME_NS, None)
    assert schedule.priority(11 * FRAME_NS, None, fresh=False, has_tracks=True) is None
    assert schedule.priority(2 * FRAME_NS, None, fresh=False, has_tracks=True) is not None  # loop, reconnect
    schedule.detected(2 * FRAME_NS, None)
    assert schedule.next_ns == 12 * FRAME_NS  # a new phase from the new clock


def _grey(value: int, size=(36, 48)) -> np.ndarray:
    return np.full(size, value, np.uint8)


def test_motion_gating_skips_still_frames_and_rechecks_at_its_own_rates():
    settings = DetectSettings(motion=True, still_recheck_s=1.0, empty_recheck_s=3.0)
    still = _grey(100)
    with_tracks = _detected_frames(CameraSchedule(settings), 40, still, has_tracks=True)
    without = _detected_frames(CameraSchedule(settings), 40, still, has_tracks=False)
    assert with_tracks == [0, 10, 20, 30] and without == [0, 30]


def test_motion_calls_for_the_detector():
    settings = DetectSettings(motion=True, motion_min_area=0.01)
    schedule = CameraSchedule(settings)
    schedule.detected(0, _grey(100))
    moved = _grey(100)
    moved[:5, :5] = 200  # 25 of 1728 pixels: 1.4 %
    assert schedule.priority(FRAME_NS, _grey(104), fresh=False, has_tracks=True) is None  # below pixel_delta
    assert schedule.priority(FRAME_NS, moved, fresh=False, has_tracks=True) is not None
    assert motion_share(_grey(100), moved, 15) == pytest.approx(25 / moved.size)


def _frames(n: int, pts_ns: int = 0) -> list[Frame]:
    return [Frame(f"c{i}", 0, pts_ns, np.zeros((4, 4, 3), np.uint8)) for i in range(n)]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_takes_the_most_overdue_first_and_defers_the_rest():
    scheduler = DetectScheduler({f"c{i}": DetectSettings(fps=5.0) for i in range(4)}, budget_s=0.04, share=0.5)
    nothing, no = [None] * 4, [False] * 4
    assert scheduler.choose(_frames(4), nothing, no, no) == [0]  # cost unknown yet: one image
    scheduler.measured(0.04, 2)  # 20 ms an image, and the credit is spent
    assert scheduler.choose(_frames(4), nothing, no, no) == []  # no camera time passed, no credit: all deferred
    # 0.1 s of camera time earns 50 ms, capped at the 40 ms budget: two images
    assert scheduler.choose(_frames(4, pts_ns=FRAME_NS), nothing, no, no) == [1, 2]  # never seen: first
    scheduler.measured(0.04, 2)
    assert scheduler.choose(_frames(4, pts_ns=2 * FRAME_NS), nothing, no, no) == [0, 3]  # c0 due, c3 deferred before
    scheduler.measured(0.04, 2)
    fresh = [True, True, True, False]
    assert scheduler.choose(_frames(4, pts_ns=2 * FRAME_NS + 1), nothing, fresh, no) == [0, 1, 2]  # beyond the budget


def test_the_detector_share_rises_while_cameras_keep_up_and_falls_fast_when_one_falls_behind():
    scheduler = DetectScheduler({"c0": DetectSettings(fps=5.0)}, share=0.5)
    nothing, no = [None], [False]
    for k in range(1, 101):  # 10 s of camera time keeping up: +0.1 a second, up to the ceiling
        scheduler.choose(_frames(1, pts_ns=k * FRAME_NS), nothing, no, no)
    assert scheduler.share == pytest.approx(SHARE_RANGE[1])
    for k in range(101, 111):  # 1 s behind: halved
        scheduler.choose(_frames(1, pts_ns=k * FRAME_NS), nothing, no, no, behind=True)
    assert scheduler.share == pytest.approx(SHARE_RANGE[1] / 2)
    for k in range(111, 211):  # behind for long: never below the floor
        scheduler.choose(_frames(1, pts_ns=k * FRAME_NS), nothing, no, no, behind=True)
    assert scheduler.share == pytest.approx(SHARE_RANGE[0])


def test_cameras_without_a_detect_rate_are_never_deferred():
    scheduler = DetectScheduler({f"c{i}": DetectSettings() for i in range(3)}, budget_s=0.01)
    scheduler.measured(1.0, 1)  # far over budget
    nothing, no = [None] * 3, [False] * 3
    assert scheduler.choose(_frames(3), nothing, no, no) == [0, 1, 2]
    assert scheduler.choose(_frames(3, pts_ns=FRAME_NS), nothing, no, no) == [0, 1, 2]


def test_detect_rate_is_reported_per_camera():
    clock = _Clock()
    scheduler = DetectScheduler({"a": DetectSettings(), "b": DetectSettings(fps=1.0)}, clock=clock)
    scheduler.measured(0.001, 1)  # cheap: the budget never binds here
    for k in range(10):
        clock.now = k * 0.1
        scheduler.choose([Frame("a", k, k * FRAME_NS, np.zeros((2, 2, 3), np.uint8)),
                          Frame("b", k, k * FRAME_NS, np.zeros((2, 2, 3), np.uint8))],
                         [None, None], [False, False], [False, False])  # fmt: skip
    rates = scheduler.detect_fps()
    assert rates["a"] == pytest.approx(10 / 5.0) and rates["b"] == pytest.approx(1 / 5.0)  # over the 5 s window


def _zones(*items) -> ZonesDoc:
    zones = [{"id": f"z{i}", "camera": cam, "polygon": poly, "occupancy": {}} for i, (cam, poly) in enumerate(items)]
    return ZonesDoc.model_validate({"zones": zones, "lines": [{"id": "l", "camera": "a", "points": [[0.5, 0.5], [0.6, 0.7]]}]})


def test_zones_region_covers_the_cameras_zones_and_lines_with_a_margin():
    doc = _zones(("a", [[0.2, 0.4], [0.4, 0.4], [0.3, 0.6]]), ("b", [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]))
    assert zones_region(doc, "a", 0.1) == pytest.approx((0.1, 0.3, 0.7, 0.8))
    assert zones_region(doc, "a", 0.5) == pytest.approx((0.0, 0.0, 1.0, 1.0))  # clipped to the frame
    assert zones_region(doc, "c", 0.1) is None
    assert region_px((0.1, 0.3, 0.7, 0.8), (768, 576)) == (76, 172, 538, 461)  # outward to whole pixels
    assert region_px((0.0, 0.0, 1.0, 1.0), (768, 576)) is None
    assert region_px((0.0, 0.05, 1.0, 1.0), (768, 576)) is None  # people would be no larger: not worth a crop
    assert region_px((0.0, 0.0, 0.79, 1.0), (768, 576)) == (0, 0, 607, 576)  # 768 / 607: 1.27x larger


def test_detections_on_a_crop_map_back_to_the_frame():
    image = np.zeros((576, 768, 3), np.uint8)
    image[200:300, 400:440] = 255  # a "person" at x 400..440, y 200..300
    region = (300, 150, 600, 450)
    part = crop(image, region)
    ys, xs = np.nonzero(part[..., 0])
    found = Detections(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int32))
    assert uncrop(found, region).xyxy.tolist() == [[400, 200, 440, 300]]
    assert uncrop(found, None) is found


def test_the_downscale_region_is_the_same_part_of_the_frame():
    small = np.zeros((144, 192, 3), np.uint8)
    small[36:72, 48:96] = 255  # a quarter-scale copy of the frame's region (192, 144, 384, 288)
    grey = grey_region(small, (192, 144, 384, 288), (768, 576))
    assert grey.shape == (36, 48) and grey.min() == 255
    assert grey_region(small, None, (768, 576)).shape == (144, 192)


def test_the_scheduler_crops_only_when_asked_and_follows_a_zones_swap():
    doc = _zones(("a", [[0.2, 0.4], [0.4, 0.4], [0.3, 0.6]]))
    scheduler = DetectScheduler({"a": DetectSettings(crop_to_zones=True, crop_margin=0.0), "b": DetectSettings()})
    assert scheduler.region("a", doc, (1000, 1000)) == (200, 400, 600, 700)
    assert scheduler.region("b", doc, (1000, 1000)) is None
    wider = _zones(("a", [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]))
    assert scheduler.region("a", wider, (1000, 1000)) is None


def test_a_rule_saying_it_needs_fresh_boxes_makes_its_camera_ask_for_them():
    class Shape:
        needs_fresh_boxes = True

    class Count:
        pass

    assert CameraRules([Count(), Shape()]).needs_fresh_boxes
    assert not CameraRules([Count()]).needs_fresh_boxes


def test_health_carries_each_cameras_detect_rate():
    base = status_health()
    gate = base.cameras["gate"].model_copy(update={"detect_fps": 5.0})
    health = Health.model_validate_json(to_bytes(base.model_copy(update={"cameras": {"gate": gate}})))
    assert health.cameras["gate"].detect_fps == 5.0
    assert 'edge_agent_camera_detect_fps{camera="gate"} 5.0' in render(health)


def test_a_still_recheck_slower_than_the_tracks_last_is_a_config_error(repo_dir):
    camera = {"id": "gate", "url": "rtsp://cam.local/s", "detect": {"motion": True, "still_recheck_s": 1.5}}
    config = {"device_id": "d", "site": "s", "model": {"manifest": str(repo_dir / "models" / "yolox_nano.json")}}
    with pytest.raises(ValidationError, match=r"cameras\[gate\].detect.still_recheck_s \(1.5\) must be below tracker"):
        AgentConfig(**config, cameras=[camera])
    AgentConfig(**config, cameras=[camera], tracker={"lost_timeout_s": 2.0})  # a longer track life: fine
