"""Tiles of dense zones and the merge of their boxes with the whole frame's."""

from __future__ import annotations

import numpy as np

from agent.core.types import Detections
from agent.runtime.tiles import merge, tile_regions

FULL = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


def dets(*boxes):
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    return Detections(xyxy, np.full(len(xyxy), 0.9, np.float32), np.zeros(len(xyxy), np.int32))


def test_tiles_cover_the_zone_at_the_zoomed_size_and_overlap():
    tiles = tile_regions([(FULL, 2.0)], (640, 480), (416, 416))
    assert {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in tiles} == {(208, 208)}
    covered = np.zeros((480, 640), bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert len(tiles) == 12  # 4 x 3: neighbours share at least a quarter of a side
    # a zone in the top-left corner gets only the tiles over it, inside the frame
    corner = np.array([[0.0, 0.0], [0.2, 0.0], [0.2, 0.2]])
    assert tile_regions([(corner, 2.0)], (640, 480), (416, 416)) == [(0, 0, 208, 208)]


def test_merge_keeps_one_box_per_person_across_tile_borders():
    tile_a, tile_b = (0, 0, 208, 208), (156, 0, 364, 208)
    small = (150, 50, 170, 110)  # inside both tiles: found twice, kept once
    part = (190, 20, 208, 170)  # a large person cut by tile_a's right border ...
    whole = (190, 20, 240, 170)  # ... whom tile_b sees whole
    at_border = (196, 175, 208, 205)  # a small person cut by the border: kept (too small to be a part)
    merged = merge(dets(), [(tile_a, dets(small, part, at_border)), (tile_b, dets(whole, small))], (640, 480), 0.45)
    assert sorted(map(tuple, merged.xyxy.tolist())) == sorted([small, whole, at_border])


def test_a_large_box_at_the_frame_border_is_not_a_part():
    edge = (0, 10, 20, 150)  # touches the tile's left border, which is the frame's
    merged = merge(dets(), [((0, 0, 208, 208), dets(edge))], (640, 480), 0.45)
    assert len(merged) == 1


def test_a_box_mostly_inside_a_larger_one_is_a_part_of_that_person():
    whole = (100, 100, 140, 200)
    head = (110, 100, 130, 125)  # a zoomed tile's person over the head of a person the frame sees whole
    beside = (125, 110, 165, 210)  # a neighbour overlapping the whole person: a third of it inside
    merged = merge(dets(whole), [((0, 0, 300, 300), dets(head, beside))], (640, 480), 0.45)
    assert sorted(map(tuple, merged.xyxy.tolist())) == sorted([whole, beside])
