"""ByteTracker: association, identity, time-based loss, bounded state; and real ground truth."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from agent.analytics.camera import build_rules
from agent.core import kalman
from agent.core.tracker import ByteTracker, TrackerConfig, match_iou
from agent.core.types import Detections, Frame, Tracks
from agent.settings.zones import ZonesDoc
from benchmarks.agent_run import counts
from benchmarks.detect_accuracy import ZONES
from engines.manifest import load_manifest
from engines.nms import iou_matrix
from testbed.pipeline import YOLOX

SIZE_WH = (768, 576)
FRAME_NS = 100_000_000  # 10 fps


def _box(cx: float, cy: float, w: float = 30.0, h: float = 80.0) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _dets(
    boxes: list[list[float]], score: float | list[float] = 0.9, class_id: int | list[int] = 0
) -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32).reshape(n, 4),
        np.broadcast_to(np.asarray(score, np.float32), (n,)).copy(),
        np.broadcast_to(np.asarray(class_id, np.int32), (n,)).copy(),
    )


def _walk(tracker: ByteTracker, frames: list[tuple[int, Detections]]) -> list[Tracks]:
    return [tracker.update(dets, pts_ns, SIZE_WH) for pts_ns, dets in frames]


def _ids(tracks: list[Tracks]) -> set[int]:
    return {int(t) for out in tracks for t in out.track_id}


def _ended(tracks: list[Tracks]) -> list[int]:
    return [int(t) for out in tracks for t in out.ended]


# --- configuration -----------------------------------------------------------------------


def test_config_fields_are_described_and_extra_is_forbidden() -> None:
    assert all(f.description for f in TrackerConfig.model_fields.values())
    with pytest.raises(ValidationError):
        TrackerConfig(lost_timeout_frames=30)


@pytest.mark.parametrize(
    "scores", [dict(low_score=0.6, high_score=0.5), dict(high_score=0.7, new_track_score=0.6)]
)
def test_config_rejects_unordered_scores(scores: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        TrackerConfig(**scores)


# --- geometry and assignment -------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 1.0 / 3.0),
        ([0, 0, 10, 10], [0, 0, 5, 5], 0.25),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # degenerate boxes: no division by zero
    ],
)
def test_iou_matrix(a: list[float], b: list[float], expected: float) -> None:
    assert iou_matrix(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("iou", "min_iou", "expected"),
    [
        # greedy would take the 0.9 pair and leave row 1 alone; the optimum matches both
        ([[0.9, 0.8], [0.85, 0.0]], 0.2, {(0, 1), (1, 0)}),
        ([[0.9, 0.8], [0.85, 0.0]], 0.82, {(0, 0)}),
        ([[0.1, 0.15]], 0.2, set()),
        (np.zeros((0, 3)), 0.2, set()),
        ([[0.5], [0.6], [0.3]], 0.2, {(1, 0)}),
        # no two candidates share a row or column: all of them, without the solve
        ([[0.5, 0.0], [0.0, 0.0], [0.0, 0.7]], 0.2, {(0, 0), (2, 1)}),
    ],
)
def test_match_iou_tables(
    iou: list[list[float]], min_iou: float, expected: set[tuple[int, int]]
) -> None:
    rows, cols = match_iou(np.asarray(iou, np.float64), min_iou)
    assert set(zip(rows.tolist(), cols.tolist())) == expected


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("density", [0.6, 0.15])  # sparse: mostly candidates alone in their row and column
def test_match_iou_is_optimal_against_brute_force(seed: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    n, m = (int(v) for v in rng.integers(1, 6, size=2))
    iou = rng.random((n, m)) * (rng.random((n, m)) < density)
    min_iou = 0.2
    rows, cols = match_iou(iou, min_iou)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert (iou[rows, cols] >= min_iou).all()
    gain = np.where(iou >= min_iou, iou, 0.0)
    if n <= m:
        best = max(gain[np.arange(n), list(p)].sum() for p in itertools.permutations(range(m), n))
    else:
        best = max(gain[list(p), np.arange(m)].sum() for p in itertools.permutations(range(n), m))
    assert iou[rows, cols].sum() == pytest.approx(best)


# --- Kalman filter -----------------------------------------------------------------------


def test_kalman_learns_velocity_in_pixels_per_second() -> None:
    xyxy = np.array([_box(100.0, 200.0)])
    mean, cov = kalman.initiate(kalman.xyxy_to_xyah(xyxy))
    speed_px_s = 50.0
    for step in range(1, 30):
        mean, cov = kalman.predict(mean, cov, 0.1)
        measured = kalman.xyxy_to_xyah(np.array([_box(100.0 + 5.0 * step, 200.0)]))
        mean, cov = kalman.update(mean, cov, measured)
    assert mean[0, 4] == pytest.approx(speed_px_s, rel=0.05)
    # half a second with no measurement moves the box by speed * dt
    coasted, _ = kalman.predict(mean, cov, 0.5)
    moved_px = kalman.mean_to_xyxy(coasted)[0, 0] - kalman.mean_to_xyxy(mean)[0, 0]
    assert moved_px == pytest.approx(speed_px_s * 0.5, rel=0.05)


def test_kalman_batch_equals_one_by_one() -> None:
    rng = np.random.default_rng(0)
    xyxy = np.array([_box(50, 60), _box(300, 200, 40, 100), _box(600, 400, 20, 50)])
    mean, cov = kalman.initiate(kalman.xyxy_to_xyah(xyxy))
    measured = kalman.xyxy_to_xyah(xyxy + rng.normal(0, 3, xyxy.shape))
    batch = kalman.update(*kalman.predict(mean, cov, 0.2), measured)
    for i in range(len(xyxy)):
        one = kalman.update(*kalman.predict(mean[i : i + 1], cov[i : i + 1], 0.2), measured[i : i + 1])
        np.testing.assert_allclose(one[0], batch[0][i : i + 1])
        np.testing.assert_allclose(one[1], batch[1][i : i + 1])


# --- tracker scenarios -------------------------------------------------------------------


def _moving(n_frames: int, start: int = 0, x0: float = 100.0, vx_px: float = 6.0, y: float = 300.0):
    """One walker, vx_px per frame, as (pts_ns, Detections) frames."""
    frames = range(start, start + n_frames)
    return [(k * FRAME_NS, _dets([_box(x0 + vx_px * k, y)])) for k in frames]


def test_ids_start_at_one_and_confirm_after_min_hits() -> None:
    tracker = ByteTracker(TrackerConfig(min_hits=3), "cam")
    out = _walk(tracker, _moving(4))
    assert [len(o) for o in out] == [0, 0, 1, 1]
    assert out[2].track_id.dtype == np.int64 and out[2].track_id.tolist() == [1]
    assert out[2].ended.dtype == np.int64 and out[2].camera_id == "cam" and out[2].size_wh == SIZE_WH


@pytest.mark.parametrize("gap_frames", [1, 3, 8, 14])
@pytest.mark.parametrize("empty_updates_in_gap", [True, False])
def test_identity_kept_across_gap_shorter_than_timeout(
    gap_frames: int, empty_updates_in_gap: bool
) -> None:
    """Missed detections, or whole dropped frames (no update): the walker keeps its id."""
    tracker = ByteTracker(TrackerConfig(lost_timeout_s=1.5), "cam")
    before = _moving(10)
    gap = [(k * FRAME_NS, Detections.empty()) for k in range(10, 10 + gap_frames)]
    after = _moving(5, start=10 + gap_frames)
    out = _walk(tracker, before + (gap if empty_updates_in_gap else []) + after)
    assert _ids(out) == {1}
    assert out[-1].track_id.tolist() == [1] and _ended(out) == []


@pytest.mark.parametrize("gap_frames", [16, 30])
@pytest.mark.parametrize("empty_updates_in_gap", [True, False])
def test_new_id_after_gap_longer_than_timeout(gap_frames: int, empty_updates_in_gap: bool) -> None:
    tracker = ByteTracker(TrackerConfig(lost_timeout_s=1.5), "cam")
    before = _moving(10)
    gap = [(k * FRAME_NS, Detections.empty()) for k in range(10, 10 + gap_frames)]
    after = _moving(5, start=10 + gap_frames)
    out = _walk(tracker, before + (gap if empty_updates_in_gap else []) + after)
    assert out[9].track_id.tolist() == [1]
    assert out[-1].track_id.tolist() == [2]  # a fresh id, never the old one
    assert _ended(out) == [1]
    if empty_updates_in_gap:
        # ended at the first frame more than 1.5 s after the last match (frame 9)
        assert out[9 + 16].ended.tolist() == [1]


def test_a_slow_camera_keeps_a_brisk_walker_as_a_10_fps_camera_does() -> None:
    """A narrow walker (20 x 50 px) at 60 px/s, every frame detected: 6 px a frame at 10 fps, 12 px at 5 fps,
    where plain IoU with the last box (0.25) is below what a new track needs (0.3), so the walker would never be
    confirmed. Frames more than 0.15 s apart widen the boxes as frames a 10 fps camera's detector skipped would
    (vtest at 5 fps: line 14 / 12, wrong-way 24, loitering 6 where it counted 12 / 12, 25, 5; at 10 fps 14 / 13,
    23, 7)."""
    for frame_ns in (FRAME_NS, 2 * FRAME_NS):
        frames = [(k * frame_ns, _dets([_box(100 + 60 * k * frame_ns / 1e9, 300, 20, 50)])) for k in range(15)]
        out = _walk(ByteTracker(TrackerConfig(), "cam"), frames)
        assert _ids(out) == {1}, frame_ns
        assert out[-1].track_id.tolist() == [1], frame_ns


def test_a_stall_widens_boxes_no_further_than_lost_timeout() -> None:
    """With a detect rate a track outlives missed looks however long they take (lost_min_looks); after a 5 s
    stall of the camera, a person 3 heights away is someone else, not the old track widened by 5 heights."""
    tracker = ByteTracker(TrackerConfig(), "cam")
    for k in range(4):
        tracker.update(_dets([_box(100, 300)]), k * FRAME_NS, SIZE_WH)
    tracker.predict(4 * FRAME_NS, SIZE_WH)
    out = tracker.update(_dets([_box(100 + 3 * 80, 300)]), 54 * FRAME_NS, SIZE_WH)
    assert 1 not in out.track_id.tolist()


def test_a_walker_who_stopped_between_looks_is_found_where_last_seen() -> None:
    """Looked at every 3rd frame (predicted between), walking at 60 px/s, missed at two looks, then seen
    standing where they were: the Kalman prediction has walked on out of reach of a 30 px box, the box where
    they were last seen has not (observation-centric recovery), so they keep their id. Detecting every frame,
    the same stop after a gap is a new track: the recovery serves a detect rate only."""
    missed_looks = 2  # one is bridged by the buffered IoU alone; three outlast lost_timeout_s
    sparse = ByteTracker(TrackerConfig(), "cam")
    out = []
    for k in range(0, 30 + 3 * missed_looks + 15):
        pts = k * FRAME_NS
        if k % 3:
            sparse.predict(pts, SIZE_WH)
            continue
        walking, standing = k < 30, k >= 30 + 3 * missed_looks
        seen = [_box(100 + 6 * min(k, 27), 300)] if walking or standing else []
        out.append(sparse.update(_dets(seen), pts, SIZE_WH))
    assert _ids(out) == {1} and _ended(out) == []
    assert out[-1].track_id.tolist() == [1]
    ahead = sparse.predict(out[-1].pts_ns + FRAME_NS, SIZE_WH)  # and it follows them where they stand
    assert iou_matrix(ahead.detections.xyxy, np.asarray([_box(100 + 6 * 27, 300)], np.float32))[0, 0] > 0.5

    every = ByteTracker(TrackerConfig(), "cam")
    frames = _moving(28) + [(k * FRAME_NS, Detections.empty()) for k in range(28, 30 + 3 * missed_looks)]
    frames += [(k * FRAME_NS, _dets([_box(100 + 6 * 27, 300)])) for k in range(30 + 3 * missed_looks, 40 + 3 * missed_looks)]
    assert _ids(_walk(every, frames)) == {1, 2}


@pytest.mark.parametrize(("vx_px", "dy_px"), [(4.0, 0.0), (8.0, 0.0), (6.0, 10.0), (12.0, 20.0)])
def test_crossing_walkers_keep_their_ids(vx_px: float, dy_px: float) -> None:
    """Two walkers cross head-on (full overlap at the middle frame) and come out with their own ids."""
    tracker = ByteTracker(TrackerConfig(), "cam")
    frames = []
    for k in range(60):
        left_to_right = _box(200.0 + vx_px * k, 300.0)
        right_to_left = _box(200.0 + vx_px * 59 - vx_px * k, 300.0 + dy_px)
        frames.append((k * FRAME_NS, _dets([left_to_right, right_to_left])))
    out = _walk(tracker, frames)
    assert all(o.track_id.tolist() == [1, 2] for o in out[1:])  # rows follow the detections' order


def test_low_scores_continue_a_track_but_never_start_one() -> None:
    tracker = ByteTracker(TrackerConfig(), "cam")
    frames = _moving(5)
    # the walker fades to 0.3 (an occlusion), while a 0.3 ghost sits elsewhere all along
    for k in range(5, 15):
        frames.append((k * FRAME_NS, _dets([_box(100 + 6 * k, 300), _box(600, 100)], score=0.3)))
    frames += [(k * FRAME_NS, _dets([_box(600, 100)], score=0.3)) for k in range(15, 30)]
    out = _walk(tracker, frames)
    assert _ids(out) == {1}
    assert all(o.track_id.tolist() == [1] for o in out[5:15])
    np.testing.assert_array_equal(out[10].detections.confidence, np.float32([0.3]))


def test_lost_track_is_not_refound_by_low_scores() -> None:
    """ByteTrack's second stage only serves tracks seen at the previous frame."""
    tracker = ByteTracker(TrackerConfig(), "cam")
    frames = _moving(5) + [(5 * FRAME_NS, Detections.empty())]
    frames.append((6 * FRAME_NS, _dets([_box(100 + 6 * 6, 300)], score=0.3)))
    out = _walk(tracker, frames)
    assert len(out[-1]) == 0


def test_class_aware_matching_keeps_classes_apart() -> None:
    tracker = ByteTracker(TrackerConfig(), "cam")
    frames = [(k * FRAME_NS, _dets([_box(300, 300)], class_id=0)) for k in range(5)]
    frames += [(k * FRAME_NS, _dets([_box(300, 300)], class_id=26)) for k in range(5, 8)]
    out = _walk(tracker, frames)
    assert out[4].track_id.tolist() == [1]
    assert out[7].track_id.tolist() == [2]


def test_ended_exactly_once_and_state_empties() -> None:
    tracker = ByteTracker(TrackerConfig(lost_timeout_s=0.5), "cam")
    frames = []
    for k in range(40):
        boxes = [_box(100 + 5 * k, 150)]
        if k < 25:
            boxes.append(_box(600 - 5 * k, 400))
        if 10 <= k < 30:
            boxes.append(_box(400, 100 + 3 * k))
        frames.append((k * FRAME_NS, _dets(boxes)))
    frames += [(k * FRAME_NS, Detections.empty()) for k in range(40, 60)]
    out = _walk(tracker, frames)
    ended = _ended(out)
    assert sorted(ended) == sorted(set(ended)) == sorted(_ids(out)) == [1, 2, 3]
    assert len(tracker) == 0
    assert all(len(o.ended) == 0 for o in out[-3:])


def test_reset_ends_every_reported_track_and_ids_keep_counting() -> None:
    tracker = ByteTracker(TrackerConfig(), "cam")
    _walk(tracker, [(k * FRAME_NS, _dets([_box(100, 100), _box(400, 400)])) for k in range(3)])
    tracker.update(_dets([_box(700, 300)]), 3 * FRAME_NS, SIZE_WH)  # an unconfirmed third
    ended = tracker.reset()
    assert ended.dtype == np.int64 and sorted(ended.tolist()) == [1, 2]
    assert len(tracker) == 0
    out = _walk(tracker, [(k * FRAME_NS, _dets([_box(100, 100)])) for k in range(10, 12)])
    assert out[-1].track_id.tolist() == [4]


def test_pts_going_backwards_ends_every_track() -> None:
    tracker = ByteTracker(TrackerConfig(), "cam")
    restarted = [(0, _dets([_box(100, 300)])), (FRAME_NS, _dets([_box(106, 300)]))]
    out = _walk(tracker, _moving(5) + restarted)
    assert out[5].ended.tolist() == [1]
    assert out[6].track_id.tolist() == [2]


def test_live_tracks_are_capped_and_evictions_reported() -> None:
    tracker = ByteTracker(TrackerConfig(max_tracks=3, lost_timeout_s=10.0), "cam")
    frames = [(k * FRAME_NS, _dets([_box(100 + 150 * i, 300) for i in range(3)])) for k in range(3)]
    # the three walkers vanish (lost, not yet timed out), then two newcomers appear
    frames += [(k * FRAME_NS, _dets([_box(200, 100), _box(500, 100)])) for k in range(3, 6)]
    out = _walk(tracker, frames)
    assert len(tracker) == 3
    assert sorted(_ended(out)) == [1, 2]  # the two longest-lost, once each
    assert sorted(out[-1].track_id.tolist()) == [4, 5]


def test_callers_arrays_are_never_modified_nor_shared() -> None:
    tracker = ByteTracker(TrackerConfig(), "cam")
    outs = []
    for pts_ns, dets in _moving(6):
        before = (dets.xyxy.copy(), dets.confidence.copy(), dets.class_id.copy())
        out = tracker.update(dets, pts_ns, SIZE_WH)
        outs.append(out)
        for after, orig in zip((dets.xyxy, dets.confidence, dets.class_id), before):
            np.testing.assert_array_equal(after, orig)
        assert not np.shares_memory(out.detections.xyxy, dets.xyxy)
    # the reported box is the detector's, not the filter's
    np.testing.assert_array_equal(outs[-1].detections.xyxy, _moving(6)[-1][1].xyxy)


# --- real ground truth -------------------------------------------------------------------


def _load_gt(gt_path: Path) -> np.ndarray:
    """MOT ground truth rows: frame, id, x, y, w, h."""
    return np.loadtxt(gt_path, delimiter=",", usecols=range(6))


def _gt_feed(
    gt: np.ndarray, seed: int, drop: float = 0.1, jitter_px: float = 3.0, every: int = 1, phase: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray, Tracks | None, Tracks]]:
    """MOT ground truth (`_load_gt`) fed to a tracker as detections, some dropped and jittered. Per frame: the GT rows
    kept, their boxes as fed, the tracks of a look (None at a frame the detector skips) and the tracks the
    rules get (predicted at a skipped frame). every, phase: detect only every `every`th frame after the
    first, from frame 1 + phase, as with a detect rate."""
    rng = np.random.default_rng(seed)
    tracker = ByteTracker(TrackerConfig(), "cam")
    for frame in range(1, int(gt[:, 0].max()) + 1):
        rows = gt[gt[:, 0] == frame]
        kept = rows[rng.random(len(rows)) >= drop]
        xyxy = np.concatenate([kept[:, 2:4], kept[:, 2:4] + kept[:, 4:6]], axis=1)
        xyxy = (xyxy + rng.normal(0.0, jitter_px, xyxy.shape)).astype(np.float32)
        dets = Detections(xyxy, np.full(len(kept), 0.9, np.float32), np.zeros(len(kept), np.int32))
        pts_ns = (frame - 1) * FRAME_NS
        if frame > 1 and (frame - 1 - phase) % every:
            yield kept, xyxy, None, tracker.predict(pts_ns, SIZE_WH)
        else:
            tracks = tracker.update(dets, pts_ns, SIZE_WH)
            yield kept, xyxy, tracks, tracks


def _gt_identity_metrics(gt_path: Path, seed: int, every: int = 1, phase: int = 0) -> dict[str, float]:
    """Score the ids of `_gt_feed`'s looks against the GT ids.

    switches: CLEAR-MOT identity switches (a GT id covered by another track id
    than at its previous covered frame); fragments: extra track ids per GT id;
    recall: GT boxes covered by a reported track.
    """
    gt = _load_gt(gt_path)
    last_track: dict[int, int] = {}
    tracks_of_gt: dict[int, set[int]] = {}
    covered = 0
    switches = 0
    for kept, xyxy, looked, _ in _gt_feed(gt, seed, every=every, phase=phase):
        if looked is None:
            continue
        for box, track_id in zip(looked.detections.xyxy, looked.track_id.tolist()):
            # the tracker reports the detector's own box: find the GT row it came from
            gt_id = int(kept[np.flatnonzero((xyxy == box).all(axis=1))[0], 1])
            covered += 1
            switches += gt_id in last_track and last_track[gt_id] != track_id
            last_track[gt_id] = track_id
            tracks_of_gt.setdefault(gt_id, set()).add(track_id)
    return {
        "switches": switches,
        "fragments": sum(len(t) - 1 for t in tracks_of_gt.values()),
        "track_ids": len(set().union(*tracks_of_gt.values())),
        "recall": covered / len(gt),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identities_on_vtest_ground_truth(media_dir: Path, seed: int) -> None:
    """PETS09-S2L1 (19 people, 795 frames at 10 fps), GT boxes with 10 % dropped and 3 px jitter.

    Measured (switches / fragments / track ids): seed 0: 11 / 7 / 19,
    seed 1: 4 / 2 / 19, seed 2: 5 / 3 / 20; recall 0.892-0.894 (the dropped
    boxes and each track's unconfirmed first frame). The misses are head-on
    crossings where two boxes overlap at IoU 0.3-0.8 under 3 px of jitter.
    """
    metrics = _gt_identity_metrics(media_dir / "vtest.gt.txt", seed)
    print(f"vtest seed {seed}: {metrics}")
    assert metrics["switches"] <= 19  # fewer than one per identity over 80 s of crossings
    assert metrics["track_ids"] <= 19 + 3
    assert metrics["recall"] >= 0.85


def test_identities_on_vtest_ground_truth_detected_every_3rd_frame(media_dir: Path) -> None:
    """The same feed detected at every 3rd frame, each phase, seeds 0-2: 50 identity switches in all
    (57 without the recovery by the box last seen), at most 8 in one run."""
    runs = [_gt_identity_metrics(media_dir / "vtest.gt.txt", seed, every=3, phase=p) for seed in range(3) for p in range(3)]
    print("vtest every 3rd frame:", [(m["switches"], m["fragments"], round(m["recall"], 3)) for m in runs])
    assert sum(m["switches"] for m in runs) <= 55
    assert all(m["recall"] >= 0.25 for m in runs)  # a third of the frames are detected


def _gt_counts(gt: np.ndarray, seed: int, every: int, phase: int) -> dict[str, int]:
    """detect_accuracy's figures (its line and plaza zone) from the rules fed `_gt_feed`'s tracks."""
    m = load_manifest(YOLOX)
    rules = build_rules(ZonesDoc.model_validate(ZONES), "cam", m.classes, m.class_map)
    rules.analyzers = []  # no pixels in the ground truth
    frame = Frame("cam", 0, 0, np.zeros((1, 1, 3), np.uint8))
    events = [
        {"camera_id": "cam", "ts": tracks.pts_ns, "body": e.body.model_dump()}
        for *_, tracks in _gt_feed(gt, seed, every=every, phase=phase)
        for e in rules.update(tracks, frame)
    ]
    return counts(events)["cam"]


def test_counts_from_ground_truth_boxes_hold_when_detecting_every_2nd_frame(media_dir: Path) -> None:
    """With clean boxes the tracker keeps vtest's counts at a detect rate: fed the ground truth's boxes
    (10 % dropped, 3 px jitter, seeds 0-2), detecting every 2nd frame gives each figure within 1 of
    detecting every frame, at both phases (measured: line 15 / 13 throughout, wrong-way 22-23 against
    21-23, loitering 7-8). So the spread of the real pipeline's counts there (benchmarks/README.md:
    wrong-way 24-25 by phase against 23) comes with the detector's boxes: whom it misses or merges at
    the frames it looks at. At every 3rd frame the tracker adds to it (wrong-way 21-24 by seed and
    phase against 21-23), so that rate is not asserted."""
    gt = _load_gt(media_dir / "vtest.gt.txt")
    for seed in range(3):
        every_frame = _gt_counts(gt, seed, every=1, phase=0)
        for phase in range(2):
            sparse = _gt_counts(gt, seed, every=2, phase=phase)
            print(f"seed {seed}: every frame {every_frame}, every 2nd frame at phase {phase} {sparse}")
            assert all(abs(sparse[k] - every_frame[k]) <= 1 for k in every_frame), (seed, phase)
