"""What a clip's ground truth says, through the agent's own rules: the reference the tests and
the benchmarks compare the pipeline with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agent.analytics.base import ClassSelector
from agent.analytics.camera import CameraRules, build_rules
from agent.analytics.kinds.line_count import LineCountRule, LineSettings
from agent.core.events import Body
from agent.core.types import Detections, Frame, Tracks
from agent.settings.zones import ZonesDoc


def gt_tracks(gt_path: Path, size_wh: tuple[int, int] = (768, 576), fps: float = 10.0) -> Iterator[Tracks]:
    """The clip's ground-truth boxes (MOT rows: frame, id, x, y, w, h) as the tracker's output of camera "cam", one
    Tracks a frame, frame 1 at time 0; a track ends at the frame after its last."""
    rows = np.loadtxt(gt_path, delimiter=",")
    last = {int(i): int(rows[rows[:, 1] == i, 0].max()) for i in np.unique(rows[:, 1])}
    for f in range(1, int(rows[:, 0].max()) + 1):
        r = rows[rows[:, 0] == f]
        xyxy = np.stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]], axis=1).astype(np.float32)
        det = Detections(xyxy.reshape(-1, 4), np.ones(len(r), np.float32), np.zeros(len(r), np.int32))
        ended = np.array([i for i, lf in last.items() if lf == f - 1], np.int64)
        yield Tracks("cam", int((f - 1) * 1e9 / fps), det, r[:, 1].astype(np.int64), ended, size_wh, seen=det)


def gt_line_counts(gt_path: Path, line, size_wh: tuple[int, int] = (768, 576), fps: float = 10.0) -> tuple[int, int]:
    """In/out counts of the clip's ground-truth tracks through the line rule."""
    rule = LineCountRule("l", np.asarray(line, np.float32), ClassSelector(["person"], ["person"], {}), LineSettings())
    for tracks in gt_tracks(gt_path, size_wh, fps):
        rule.update(tracks)
    count_in, count_out = rule.counts["person"]
    return count_in, count_out


def gt_events(
    gt_path: Path, zones: ZonesDoc, classes: list[str], class_map: dict[str, str]
) -> tuple[list[tuple[float, Body]], CameraRules]:
    """The events of camera "cam"'s rules in `zones` fed with the ground-truth tracks, each with its time in seconds
    from the clip's first frame, and the rules after the clip. No analyzer runs: the ground truth has no pixels."""
    rules = build_rules(zones, "cam", classes, class_map)
    rules.analyzers = []
    frame = Frame("cam", 0, 0, np.zeros((1, 1, 3), np.uint8))
    events = [(t.pts_ns / 1e9, e.body) for t in gt_tracks(gt_path) for e in rules.update(t, frame)]
    return events, rules


def _marks(events: list[tuple[float, Body]]) -> list[tuple[float, str, tuple[float, float]]]:
    """(time, what, point) of each line crossing (what: the line and its direction) and each situation's start
    (what: the zone and the kind)."""
    marks = []
    for t, body in events:
        if body.kind == "line_count":
            marks.append((t, f"{body.line_id} {body.direction}", body.point))
        elif getattr(body, "state", None) == "started":
            marks.append((t, f"{body.zone_id} {body.kind}", body.point))
    return marks


def agreement(
    ours: list[tuple[float, Body]], truth: list[tuple[float, Body]], within_s: float = 5.0, within: float = 0.15
) -> dict[str, dict[str, int]]:
    """Event by event against the ground truth's events: each line crossing and each situation's start of
    `ours` is paired with at most one of `truth`'s of the same line and direction, or zone and kind, at most
    `within_s` seconds and `within` (normalised frame units) away, the closest pairs first. Per what:
    `hits` (pairs), `missed` (the truth's left) and `extra` (ours left). Counts alone can agree while
    the events do not: a missed situation and an extra one cancel out."""
    a, b = _marks(ours), _marks(truth)
    near = (
        (abs(ta - tb), float(np.hypot(pa[0] - pb[0], pa[1] - pb[1])), i, j)
        for i, (ta, wa, pa) in enumerate(a) for j, (tb, wb, pb) in enumerate(b) if wa == wb
    )  # fmt: skip
    pairs = sorted((dt / within_s + d / within, i, j) for dt, d, i, j in near if dt <= within_s and d <= within)
    paired_a, paired_b = set(), set()
    for _, i, j in pairs:
        if i not in paired_a and j not in paired_b:
            paired_a.add(i)
            paired_b.add(j)
    whats = sorted({w for _, w, _ in a + b})
    return {
        w: {
            "hits": sum(1 for i in paired_a if a[i][1] == w),
            "missed": sum(1 for j, m in enumerate(b) if m[1] == w and j not in paired_b),
            "extra": sum(1 for i, m in enumerate(a) if m[1] == w and i not in paired_a),
        }
        for w in whats
    }
