"""ByteTrack-style multi-object tracker: pure, vectorised, one instance and one id space per camera.

Per frame: Kalman-predict every live track to the frame's pts, then
1. match high-score detections to confirmed tracks (tracked and lost) by IoU,
2. match low-score detections to the tracked ones left (they keep a track
   alive through occlusion but never start one),
3. when the detector skipped frames since the last update (a detect rate),
   match the confirmed tracks still left to the high-score detections left by
   IoU with the box where each was last seen, not its prediction (OC-SORT's
   observation-centric recovery: a person who stopped or turned back between
   looks is found where the constant-velocity prediction no longer is; with
   every frame detected the prediction is one frame old, and on vtest this
   stage moved the plaza's occupancy error from 0.45 to 0.53 persons),
4. match unconfirmed tracks to the high-score detections left,
5. start unconfirmed tracks from the high-score detections still left.
Time comes from pts_ns only, so the same footage always yields the same tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.core import kalman
from agent.core.types import Detections, Tracks
from agent.core.units import NS_PER_S
from engines.nms import iou_matrix


class TrackerConfig(BaseModel):
    """Thresholds of the ByteTrack association.

    Defaults are ByteTrack's published ones (its 30-frame buffer at 30 fps
    becomes lost_timeout_s = 1 s), plus bounded state and class gating.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # 0.4 rather than ByteTrack's 0.5/0.6: a lying person scores 0.4-0.55 on a nano
    # detector and must still be tracked; measured on vtest.avi, line counts are the
    # same (in 14, out 13) at 0.5/0.6, 0.4/0.45 and 0.4/0.4.
    high_score: float = Field(
        0.4, gt=0.0, le=1.0,
        description="Detections scoring at least this take part in the first association stage.",
    )
    low_score: float = Field(
        0.1, gt=0.0, le=1.0,
        description="Detections scoring at least this (and below high_score) may only continue "
        "a track matched at the previous frame. The detector hands on none below model.confidence, "
        "so this stage sees scores from the higher of the two up to high_score.",
    )
    new_track_score: float = Field(
        0.4, gt=0.0, le=1.0,
        description="An unmatched high-score detection starts a track only if it scores at least this.",
    )
    match_iou_high: float = Field(
        0.2, gt=0.0, le=1.0,
        description="Minimum IoU between a predicted track box and a high-score detection to match.",
    )
    match_iou_low: float = Field(
        0.5, gt=0.0, le=1.0,
        description="Minimum IoU to match a tracked track to a low-score detection "
        "(stricter: low scores are often clutter).",
    )
    match_iou_unconfirmed: float = Field(
        0.3, gt=0.0, le=1.0,
        description="Minimum IoU to match an unconfirmed track to a high-score detection.",
    )
    min_hits: int = Field(
        2, ge=1,
        description="Consecutive matched frames a new track needs before it is confirmed and reported.",
    )
    lost_timeout_s: float = Field(
        1.0, gt=0.0,
        description="Seconds of pts a confirmed track may go unmatched before it ends; "
        "it can be re-found until then.",
    )
    # Chosen from walking speed, not fitted: a walker covers about 0.8 of their height a second
    # (1.4 m/s at 1.7 m), and one height a second covers that with no velocity estimate yet (a new
    # track). On vtest.avi (line x=0.5, ground truth in 15 / out 13, every frame 14 / 13), detecting
    # every 2nd, 3rd, 4th frame: plain IoU counts in 13, 10, 6; 0.5 gives 13, 12, 11; 1 gives 14,
    # 14, 15; 2 gives 14, 13, 16 (issue 15's evaluation, before the recovery by the box last seen).
    match_buffer_per_s: float = Field(
        1.0, ge=0.0, le=10.0,
        description="Before IoU matching, predicted and detected boxes are widened on every side by this share "
        "of their height per second of frames the detector skipped since it last looked (`predict`; buffered "
        "IoU), so that a person detected only every few frames still overlaps the track's prediction; when the "
        "detector's looks come more than 0.15 s apart (a camera slower than about 7 fps, frames lost), per second "
        "beyond 0.1 s up to lost_timeout_s, as if a 10 fps camera's detector had skipped them. Detecting every "
        "frame of a camera of 7 fps or more, matching is plain IoU whatever this says.",
    )
    lost_min_looks: int = Field(
        2, ge=1,
        description="With a detect rate (frames the detector skips, `predict`), a lost track also outlives this "
        "many detector looks without a match, however long they take, so a camera detected a few times a second "
        "does not end a track at its first miss. Detecting every frame, only lost_timeout_s counts.",
    )
    max_tracks: int = Field(
        256, ge=1,
        description="Cap on live tracks per camera; the longest-lost tracks are evicted first, "
        "then new tracks are refused.",
    )
    class_aware: bool = Field(
        True,
        description="Match a track only to detections of its own class, "
        "so a bag never continues a person's track.",
    )

    @model_validator(mode="after")
    def _ordered_scores(self) -> TrackerConfig:
        if not self.low_score <= self.high_score <= self.new_track_score:
            raise ValueError("scores must satisfy low_score <= high_score <= new_track_score")
        return self


@dataclass(frozen=True, slots=True)
class _TrackTable:
    """Live tracks as rows of arrays, so prediction and matching run on all of them at once.

    track_id int64 (N,); mean float64 (N, 8) and cov float64 (N, 8, 8) in
    agent.core.kalman's state; class_id int32 (N,); score float32 (N,) confidence
    of the last matched detection; hits int32 (N,) consecutive matched frames;
    confirmed bool (N,); lost bool (N,) confirmed but missed at the last update;
    last_seen_ns int64 (N,) pts of the last match; misses int32 (N,) updates (detector looks)
    since the last match; seen_xyxy float32 (N, 4) the box of the last matched detection.
    """

    track_id: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    class_id: np.ndarray
    score: np.ndarray
    hits: np.ndarray
    confirmed: np.ndarray
    lost: np.ndarray
    last_seen_ns: np.ndarray
    misses: np.ndarray
    seen_xyxy: np.ndarray

    @classmethod
    def empty(cls) -> _TrackTable:
        return cls(
            np.zeros(0, np.int64), np.zeros((0, 8)), np.zeros((0, 8, 8)), np.zeros(0, np.int32),
            np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, bool), np.zeros(0, bool),
            np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 4), np.float32),
        )

    def __len__(self) -> int:
        return len(self.track_id)

    def select(self, keep: np.ndarray) -> _TrackTable:
        """The rows where bool (N,) `keep` holds; the table itself when all do (its arrays are never written)."""
        if keep.all():
            return self
        return _TrackTable(*(getattr(self, name)[keep] for name in _COLUMNS))

    def concat(self, other: _TrackTable) -> _TrackTable:
        if not len(other):
            return self
        return _TrackTable(*(np.concatenate([getattr(self, name), getattr(other, name)]) for name in _COLUMNS))


_COLUMNS = tuple(f.name for f in fields(_TrackTable))
LOOK_S = 0.1  # the gap between looks plain IoU matching holds at (a 10 fps camera detected every frame)


def _buffered(xyxy: np.ndarray, buffer: float) -> np.ndarray:
    """Boxes float (N, 4) widened on every side by `buffer` times their height (buffered IoU)."""
    if buffer <= 0.0:
        return xyxy
    pad = buffer * (xyxy[:, 3:4] - xyxy[:, 1:2]).astype(np.float64)
    return np.asarray(xyxy, np.float64) + np.concatenate([-pad, -pad, pad, pad], axis=1)


def match_iou(iou: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of rows to columns that maximises the summed IoU of pairs at or above min_iou.

    iou: float (N, M). Returns int64 row and column indices, aligned. An
    optimal assignment rather than greedy-by-IoU: on the vtest ground-truth
    test (10 % of boxes dropped, 3 px jitter, seeds 0-9) it made 60 identity
    switches in all where greedy made 97.
    """
    valid = iou >= min_iou
    # A row or column with no candidate cannot match: dropping it keeps the cubic solve small.
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    kept = np.ix_(rows, cols)
    candidates = valid[kept]
    if (candidates.sum(axis=0) <= 1).all() and (candidates.sum(axis=1) <= 1).all():
        # no two candidates share a row or column (most frames): every candidate pair is in the assignment
        r, c = np.nonzero(candidates)
        return rows[r], cols[c]
    # Every non-candidate pair costs 1, so minimising the cost maximises the IoU of real pairs.
    cost = np.where(candidates, 1.0 - iou[kept], 1.0)
    if len(rows) <= len(cols):
        r, c = np.arange(len(rows)), _hungarian(cost)
    else:
        c, r = np.arange(len(cols)), _hungarian(cost.T)
    r, c = rows[r], cols[c]
    ok = valid[r, c]
    return r[ok], c[ok]


def _hungarian(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost assignment of every row of cost float64 (n, m), n <= m: int64 (n,) column per row.

    Kuhn-Munkres with row/column potentials and shortest augmenting paths
    (O(n² m)); the scans over columns are vectorised. Indices are 1-based
    inside, column 0 being the virtual start of each augmenting path.
    """
    n, m = cost.shape
    row_u, col_v = np.zeros(n + 1), np.zeros(m + 1)
    row_of_col = np.zeros(m + 1, np.int64)  # 0: column free
    prev_col = np.zeros(m + 1, np.int64)  # the augmenting path, walked back from its end
    for i in range(1, n + 1):
        row_of_col[0] = i
        col = 0
        min_slack = np.full(m + 1, np.inf)
        visited = np.zeros(m + 1, bool)
        while True:
            visited[col] = True
            row = row_of_col[col]
            slack = cost[row - 1] - row_u[row] - col_v[1:]
            free = ~visited[1:]
            better = free & (slack < min_slack[1:])
            min_slack[1:][better] = slack[better]
            prev_col[1:][better] = col
            candidate = np.where(free, min_slack[1:], np.inf)
            next_col = int(np.argmin(candidate)) + 1
            delta = candidate[next_col - 1]
            seen = np.flatnonzero(visited)
            row_u[row_of_col[seen]] += delta
            col_v[seen] -= delta
            min_slack[1:][free] -= delta
            col = next_col
            if row_of_col[col] == 0:
                break
        while col != 0:
            row_of_col[col] = row_of_col[prev_col[col]]
            col = prev_col[col]
    col_of_row = np.zeros(n, np.int64)
    assigned = np.flatnonzero(row_of_col[1:])
    col_of_row[row_of_col[1:][assigned] - 1] = assigned
    return col_of_row


class ByteTracker:
    """Tracks one camera's detections; `update` once per frame, in pts order."""

    def __init__(self, config: TrackerConfig, camera_id: str) -> None:
        self.config = config
        self.camera_id = camera_id
        self._table = _TrackTable.empty()
        self._last_pts_ns: int | None = None
        self._predicted_ns: int | None = None  # pts of the last frame predicted since the last update
        self._next_id = 1

    def __len__(self) -> int:
        """Live tracks held (tracked, lost and unconfirmed): bounded by config.max_tracks."""
        return len(self._table)

    def reset(self) -> np.ndarray:
        """Drop every live track (camera removed, timeline broken).

        Returns int64 (M,) ids of the reported tracks dropped, to pass on as
        `ended`. Ids keep counting up: they are never reused.
        """
        ended = self._table.track_id[self._table.confirmed].copy()
        self._table = _TrackTable.empty()
        self._last_pts_ns = self._predicted_ns = None
        return ended

    def update(self, detections: Detections, pts_ns: int, size_wh: tuple[int, int]) -> Tracks:
        """Associate one frame's detections; the caller's arrays are never modified.

        Returns the confirmed tracks matched at this frame, rows aligned with
        copies of their detections (the detector's boxes, not the filter's),
        and `ended`: ids of reported tracks removed at this frame.
        """
        ended = []
        if self._last_pts_ns is not None and pts_ns < self._last_pts_ns:
            # A camera reconnect or a file loop restarts the clock: motion across it means nothing.
            ended.append(self.reset())
        dt_s = 0.0 if self._last_pts_ns is None else (pts_ns - self._last_pts_ns) / NS_PER_S
        # the time covered by frames the detector skipped (predicted): 0 when it sees every frame
        unseen_s = 0.0 if self._predicted_ns is None else max(self._predicted_ns - (self._last_pts_ns or 0), 0) / NS_PER_S
        self._last_pts_ns, self._predicted_ns = pts_ns, None

        table = self._table
        expired = (pts_ns - table.last_seen_ns) > round(self.config.lost_timeout_s * NS_PER_S)
        if unseen_s > 0.0:  # the detector skips frames: a track also outlives lost_min_looks looks
            expired &= table.misses >= self.config.lost_min_looks
        ended.append(table.track_id[expired & table.confirmed])
        table = table.select(~expired)

        mean = table.mean.copy()
        mean[table.lost, 7] = 0.0  # as ByteTrack: a lost box stops growing while it coasts
        mean, cov = kalman.predict(mean, table.cov, dt_s)

        # looks far apart (a slow camera, frames lost) widen boxes as frames a 10 fps camera's detector skipped
        # would, up to lost_timeout_s: after a longer stall a track kept by lost_min_looks is not looked for anywhere
        gap_s = max(unseen_s, min(dt_s, self.config.lost_timeout_s) - LOOK_S) if dt_s > 1.5 * LOOK_S else unseen_s
        det_for_track = self._associate(table, mean, detections, self.config.match_buffer_per_s * gap_s, unseen_s > 0.0)
        matched = det_for_track >= 0
        det_idx = det_for_track[matched]
        mean[matched], cov[matched] = kalman.update(
            mean[matched], cov[matched], kalman.xyxy_to_xyah(detections.xyxy[det_idx])
        )
        hits = np.where(matched, table.hits + 1, 0).astype(np.int32)
        class_id, score = table.class_id.copy(), table.score.copy()
        class_id[matched] = detections.class_id[det_idx]
        score[matched] = detections.confidence[det_idx]
        seen_xyxy = table.seen_xyxy.copy()
        seen_xyxy[matched] = detections.xyxy[det_idx]
        table = _TrackTable(
            track_id=table.track_id,
            mean=mean,
            cov=cov,
            class_id=class_id,
            score=score,
            hits=hits,
            confirmed=table.confirmed | (hits >= self.config.min_hits),
            lost=table.confirmed & ~matched,
            last_seen_ns=np.where(matched, pts_ns, table.last_seen_ns),
            misses=np.where(matched, 0, table.misses + 1).astype(np.int32),
            seen_xyxy=seen_xyxy,
        )
        # An unconfirmed track missed once is noise (ByteTrack); never reported, so not `ended`.
        keep = table.confirmed | matched
        table, det_of_row = table.select(keep), det_for_track[keep]

        unclaimed = np.ones(len(detections), bool)
        unclaimed[det_idx] = False
        new_det = np.flatnonzero(unclaimed & (detections.confidence >= self.config.new_track_score))
        evict = self._evict(table, len(new_det))
        ended.append(table.track_id[evict])
        table, det_of_row = table.select(~evict), det_of_row[~evict]
        # With no room for all, the most confident detections get the free slots.
        room = self.config.max_tracks - len(table)
        new_det = np.sort(new_det[np.argsort(-detections.confidence[new_det], kind="stable")[:room]])
        table = table.concat(self._new_tracks(detections, new_det, pts_ns))
        det_of_row = np.concatenate([det_of_row, new_det])
        self._table = table

        rows = np.flatnonzero(table.confirmed & (det_of_row >= 0))
        rows = rows[np.argsort(det_of_row[rows], kind="stable")]  # in the detector's order
        return Tracks(
            camera_id=self.camera_id,
            pts_ns=pts_ns,
            detections=detections.select(det_of_row[rows]),
            track_id=table.track_id[rows].copy(),
            ended=np.concatenate(ended).astype(np.int64),
            size_wh=size_wh,
        )

    def predict(self, pts_ns: int, size_wh: tuple[int, int]) -> Tracks:
        """The tracks of a frame the detector did not look at: every track matched at the last
        `update`, at its Kalman-predicted box for `pts_ns` (clipped to the frame), with the class
        and score of its last detection. Changes no track, so the next `update` associates as if
        the frames between had not been seen, except that it widens boxes for the time they
        covered (`match_buffer_per_s`); no track ends here."""
        if self._last_pts_ns is not None and pts_ns > self._last_pts_ns:
            self._predicted_ns = pts_ns
        table = self._table
        rows = np.flatnonzero(table.confirmed & ~table.lost)
        dt_s = 0.0 if self._last_pts_ns is None else max(pts_ns - self._last_pts_ns, 0) / NS_PER_S
        xyxy = kalman.mean_to_xyxy(kalman.predict_mean(table.mean[rows], dt_s)).astype(np.float32)
        width, height = size_wh
        np.clip(xyxy, 0, [width, height, width, height], out=xyxy)
        boxes = Detections(xyxy, table.score[rows].copy(), table.class_id[rows].copy())
        return Tracks(self.camera_id, pts_ns, boxes, table.track_id[rows].copy(), np.zeros(0, np.int64), size_wh)

    def _associate(
        self, table: _TrackTable, mean: np.ndarray, detections: Detections, buffer: float, recover: bool
    ) -> np.ndarray:
        """ByteTrack's matching stages on predicted means float64 (N, 8), boxes widened by `buffer` heights, with
        OC-SORT's recovery when `recover` (the detector skipped frames).

        Returns int64 (N,): the detection index matched to each track row, -1 if none.
        """
        cfg = self.config

        def class_gated(track_xyxy: np.ndarray) -> np.ndarray:
            """Buffered IoU of track boxes (N, 4) with the detections, 0 across classes when class-aware."""
            iou = iou_matrix(_buffered(track_xyxy, buffer), _buffered(detections.xyxy, buffer))
            if cfg.class_aware:
                iou[table.class_id[:, None] != detections.class_id[None, :]] = 0.0
            return iou

        iou = class_gated(kalman.mean_to_xyxy(mean))
        score = detections.confidence
        high = np.flatnonzero(score >= cfg.high_score)
        low = np.flatnonzero((score >= cfg.low_score) & (score < cfg.high_score))
        det_for_track = np.full(len(table), -1, np.int64)

        def stage(track_rows: np.ndarray, det_rows: np.ndarray, min_iou: float, iou: np.ndarray = iou) -> np.ndarray:
            """Match and record; returns the detections left unmatched."""
            r, c = match_iou(iou[np.ix_(track_rows, det_rows)], min_iou)
            det_for_track[track_rows[r]] = det_rows[c]
            return np.delete(det_rows, c)

        confirmed = np.flatnonzero(table.confirmed)
        high = stage(confirmed, high, cfg.match_iou_high)
        still_tracked = confirmed[(det_for_track[confirmed] < 0) & ~table.lost[confirmed]]
        stage(still_tracked, low, cfg.match_iou_low)
        unmatched = confirmed[det_for_track[confirmed] < 0]
        if recover and len(unmatched) and len(high):  # where they were last seen (stage 3)
            high = stage(unmatched, high, cfg.match_iou_high, class_gated(table.seen_xyxy))
        stage(np.flatnonzero(~table.confirmed), high, cfg.match_iou_unconfirmed)
        return det_for_track

    def _evict(self, table: _TrackTable, n_new: int) -> np.ndarray:
        """bool (N,): the longest-lost tracks to drop so that n_new tracks fit under the cap."""
        excess = len(table) + n_new - self.config.max_tracks
        evict = np.zeros(len(table), bool)
        if excess > 0:
            lost = np.flatnonzero(table.lost)
            evict[lost[np.argsort(table.last_seen_ns[lost], kind="stable")[:excess]]] = True
        return evict

    def _new_tracks(self, detections: Detections, det_rows: np.ndarray, pts_ns: int) -> _TrackTable:
        """Tracks started at this frame from detections det_rows int64 (K,), with fresh ids."""
        n = len(det_rows)
        mean, cov = kalman.initiate(kalman.xyxy_to_xyah(detections.xyxy[det_rows]))
        track_id = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        return _TrackTable(
            track_id=track_id,
            mean=mean,
            cov=cov,
            class_id=detections.class_id[det_rows].astype(np.int32),
            score=detections.confidence[det_rows].astype(np.float32),
            hits=np.ones(n, np.int32),
            confirmed=np.full(n, self.config.min_hits <= 1),
            lost=np.zeros(n, bool),
            last_seen_ns=np.full(n, pts_ns, np.int64),
            misses=np.zeros(n, np.int32),
            seen_xyxy=detections.xyxy[det_rows].astype(np.float32),
        )
