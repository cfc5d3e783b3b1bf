"""Dense zones detected at a higher effective resolution: tiles of the model's input size divided by a
zone's zoom (frame pixels), each letterboxed to the model's input by the detector like any crop
(agent/runtime/scheduler.py `crop`/`uncrop`), merged with the whole frame's boxes.

Tiles overlap by `OVERLAP` of their side, so a small person cut by one tile's border is whole in its
neighbour. The merge drops the tile boxes that are cut by an inner tile border and taller than
`SPLIT_TALL` of the tile (parts of a person too large for a tile, whom the whole frame sees
whole), keeps one box per person by class-aware NMS over all the boxes, then drops the boxes with
`INSIDE` of their area or more inside a larger box of their class (a zoomed tile sees a large
person's head, upper body or legs as persons too; NMS keeps them, their IoU with the whole is small).
Both were chosen by cross-validation with the crowd area estimate's constants (`make crowd-fit`).
"""

from __future__ import annotations

import math

import numpy as np

from agent.core.types import Detections
from agent.runtime.scheduler import Region, crop, uncrop
from engines.nms import inside_larger, nms

OVERLAP = 0.25  # share of a tile's side shared with its neighbour
_CUT_PX = 2.0  # a box this close to an inner tile border was cut by it
# chosen by `make crowd-fit` (benchmarks/crowd_fit.py) by cross-validation; math.inf: never
SPLIT_TALL = 0.5  # a box cut by an inner tile border and taller than this share of its tile is part of a large person
INSIDE = 0.3  # a box with this share of its area or more inside a larger box of its class is a part of that person


Job = tuple[np.ndarray, "Region | None", list[tuple[np.ndarray, float]]]
"""A frame's image uint8 (H, W, 3), the region to detect on (None: the whole frame), and its dense zones
(polygon, zoom), [] for none."""


def detect(detector, jobs: list[Job], sizes_wh: list[tuple[int, int] | None] | None = None) -> list:
    """One batch: each job's region and, where it has dense zones, their tiles, all through the detector
    at once; returns one Detections per job, in pixels of its frame, the tiles' boxes merged in.
    sizes_wh: per job, the model input size its camera asks for (None: the model's)."""
    sizes = sizes_wh or [None] * len(jobs)
    tiles = [
        tile_regions(z, (im.shape[1], im.shape[0]), size or detector.manifest.input.size_wh) if z else []
        for (im, _, z), size in zip(jobs, sizes)
    ]
    found = iter(detector.detect(
        [crop(im, r) for (im, region, _), t in zip(jobs, tiles) for r in [region, *t]],
        [size for size, t in zip(sizes, tiles) for _ in range(1 + len(t))],
    ))  # fmt: skip
    out = []
    for (im, region, _), t in zip(jobs, tiles):
        base = uncrop(next(found), region)
        tiled = [(r, uncrop(next(found), r)) for r in t]
        out.append(merge(base, tiled, (im.shape[1], im.shape[0]), detector.nms_iou) if tiled else base)
    return out


def tile_regions(
    zones: list[tuple[np.ndarray, float]], size_wh: tuple[int, int], input_wh: tuple[int, int]
) -> list[Region]:
    """Tiles covering each zone's bounding box: zones (polygon float (M, 2) normalised, zoom); the tile side
    is the model's input (w, h) / zoom, in pixels of a frame of `size_wh`."""
    w, h = size_wh
    out: list[Region] = []
    for polygon, zoom in zones:
        lo, hi = np.asarray(polygon).min(axis=0), np.asarray(polygon).max(axis=0)
        x0, y0, x1, y1 = math.floor(lo[0] * w), math.floor(lo[1] * h), math.ceil(hi[0] * w), math.ceil(hi[1] * h)
        tw, th = min(round(input_wh[0] / zoom), w), min(round(input_wh[1] / zoom), h)
        for ty in _starts(y0, y1, th, h):
            for tx in _starts(x0, x1, tw, w):
                region = (tx, ty, tx + tw, ty + th)
                if region not in out:
                    out.append(region)
    return out


def _starts(lo: int, hi: int, side: int, limit: int) -> list[int]:
    """Start positions of tiles of `side` overlapping by OVERLAP that cover lo..hi, inside 0..limit."""
    lo, hi = max(0, min(lo, limit - side)), max(hi, lo + side)
    n = max(1, math.ceil((hi - lo - side) / (side * (1 - OVERLAP))) + 1)
    last = min(hi, limit) - side
    return sorted({round(lo + (last - lo) * k / max(n - 1, 1)) for k in range(n)})


def merge(base: Detections, tiles: list[tuple[Region, Detections]], size_wh: tuple[int, int], iou: float) -> Detections:
    """The boxes of the whole frame (or crop) `base` and of its tiles (each already in frame pixels) as one set."""
    parts = [base, *(d for _, d in tiles)]
    every = Detections(np.concatenate([d.xyxy for d in parts]).reshape(-1, 4),
                       np.concatenate([d.confidence for d in parts]), np.concatenate([d.class_id for d in parts]))  # fmt: skip
    split = [np.zeros(len(base), bool)]
    for region, d in tiles:
        tall = d.xyxy[:, 3] - d.xyxy[:, 1] > SPLIT_TALL * (region[3] - region[1])
        split.append(tall & _cut(d.xyxy, region, size_wh))
    whole = every.select(~np.concatenate(split))
    kept = whole.select(nms(whole.xyxy, whole.confidence, whole.class_id, iou, len(whole)))
    return kept.select(~inside_larger(kept.xyxy, INSIDE, kept.class_id))


def _cut(xyxy: np.ndarray, region: Region, size_wh: tuple[int, int]) -> np.ndarray:
    """bool (N,): boxes touching a border of their tile that is not the frame's border."""
    x0, y0, x1, y1 = region
    w, h = size_wh
    return (
        ((xyxy[:, 0] <= x0 + _CUT_PX) & (x0 > 0))
        | ((xyxy[:, 1] <= y0 + _CUT_PX) & (y0 > 0))
        | ((xyxy[:, 2] >= x1 - _CUT_PX) & (x1 < w))
        | ((xyxy[:, 3] >= y1 - _CUT_PX) & (y1 < h))
    )
