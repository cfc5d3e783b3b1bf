"""The zones document: polygons and lines per camera and the rules attached to them.

Coordinates are normalised 0..1 to the frame. Polygons are simple (no
self-intersection) with at least 3 distinct points; a closing point equal to
the first is accepted and dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    model_validator,
)

from agent.analytics.analyzers.settings import AnalysisSettings
from agent.analytics.kinds import LINE_KINDS, ZONE_KINDS
from agent.analytics.kinds.line_count import LineSettings
from agent.core.geometry import polygon_area, polygon_is_simple
from agent.core.ground import GroundPlane

NormXY = Annotated[
    tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]],
    Field(description="normalised (x, y): 0..1 of the frame width and height"),
]
RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


def _fractions_of_the_frame(points: object) -> object:
    """A shape's points outside 0..1, said once for the shape and with what they look like (pixels, or off the
    frame), before the per-number errors; anything else is left to the type's own checks."""
    pairs = points if isinstance(points, list | tuple) else []
    outside = [
        p for p in pairs
        if isinstance(p, list | tuple) and any(isinstance(v, int | float) and not 0.0 <= v <= 1.0 for v in p)
    ]  # fmt: skip
    if not outside:
        return points
    first = tuple(outside[0])
    if any(isinstance(v, int | float) and v > 2.0 for p in outside for v in p):
        raise ValueError(
            f"{len(outside)} of its points are outside 0..1, e.g. {first}, which looks like pixels: points are "
            "fractions of the frame (x / width, y / height); divide by the frame's size, or draw it in the zone editor"
        )
    raise ValueError(
        f"{len(outside)} of its points are off the frame, e.g. {first}: points are fractions of the frame, each "
        "within 0..1 (x / width, y / height)"
    )


Shape = BeforeValidator(_fractions_of_the_frame)
# Caps that bound the work of checking a document (the simplicity check is quadratic in
# the vertices of a polygon): the zone editor, `check-config` and OTA all go through them.
MAX_POLYGON_POINTS = 100
MAX_SHAPES = 128  # zones, and lines, per document


def _simple_polygon(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    given = len(points)
    if given >= 2 and points[0] == points[-1]:
        points = points[:-1]
    if len(points) < 3:
        closing = f" ({given} given, the last repeating the first, which closes a polygon anyway)" if len(points) < given else ""
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}{closing}")
    poly = np.asarray(points, dtype=np.float64)
    if not polygon_is_simple(poly):
        raise ValueError("polygon is not simple: two of its edges cross or touch, or a point repeats")
    if polygon_area(poly) <= 1e-6:
        raise ValueError("polygon has no area (its points are collinear)")
    return points


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ZoneShape(_Strict):
    id: RuleId = Field(description="zone id, unique per camera; appears in events")
    camera: RuleId = Field(description="id of the camera the zone belongs to")
    polygon: Annotated[list[NormXY], Shape, AfterValidator(_simple_polygon)] = Field(
        max_length=MAX_POLYGON_POINTS,
        description=f"vertices in order, normalised 0..1; at least 3, at most {MAX_POLYGON_POINTS}, not self-intersecting",
    )
    classes: list[str] = Field(["person"], min_length=1, description="class names or class-map categories watched")

    @model_validator(mode="after")
    def _required_classes(self) -> _ZoneShape:
        for kind in ZONE_KINDS:
            missing = kind.requires - set(self.classes)
            if getattr(self, kind.field) is not None and missing:
                raise ValueError(f"{kind.field} needs {sorted(missing)} in classes")
        return self


# One optional settings block per registered zone kind: present turns the rule on.
Zone = create_model(
    "Zone",
    __base__=_ZoneShape,
    **{k.field: (k.settings | None, Field(None, description=k.description)) for k in ZONE_KINDS},  # type: ignore[call-overload]
)


class Line(_Strict):
    id: RuleId = Field(description="line id, unique per camera; appears in events")
    camera: RuleId = Field(description="id of the camera the line belongs to")
    points: Annotated[tuple[NormXY, NormXY], Shape] = Field(
        description="from a to b, normalised; crossing from the left of a->b to its right (on screen) is `in`"
    )
    classes: list[str] = Field(["person"], min_length=1, description="class names or class-map categories counted")
    counting: LineSettings = Field(LineSettings(), description=LINE_KINDS[0].description)

    @model_validator(mode="after")
    def _distinct(self) -> Line:
        if self.points[0] == self.points[1]:
            raise ValueError("a line needs two distinct points")
        return self


MetresXY = Annotated[
    tuple[Annotated[float, Field(ge=-1e5, le=1e5)], Annotated[float, Field(ge=-1e5, le=1e5)]],
    Field(description="(x, y) on the ground in metres, in any frame of the site's choosing"),
]


class GroundCalibration(_Strict):
    """A camera's ground plane: four points of the ground on its frame and where they are, in metres (the
    corners of a floor marking, of tiles, of a measured rectangle). Zone areas, distances and speeds of that
    camera can then be given in metres."""

    camera: RuleId = Field(description="id of the camera calibrated")
    image_points: Annotated[tuple[NormXY, NormXY, NormXY, NormXY], Shape] = Field(
        description="four points on the ground in the camera's frame, normalised; no three in a line"
    )
    ground_m: tuple[MetresXY, MetresXY, MetresXY, MetresXY] = Field(
        description="the same four points' positions on the ground in metres, in the same order"
    )

    @model_validator(mode="after")
    def _defines_a_plane(self) -> GroundCalibration:
        self.plane()  # ValueError naming the problem when the points give no homography
        return self

    def plane(self) -> GroundPlane:
        return GroundPlane(np.asarray(self.image_points), np.asarray(self.ground_m))


class ZonesDoc(_Strict):
    version: int = Field(1, ge=1, description="zones version, increased by every change (shown in status)")
    analysis: AnalysisSettings = Field(AnalysisSettings(), description="frame-level analyzers, shared by all cameras")
    zones: list[Zone] = Field([], max_length=MAX_SHAPES, description=f"polygons and the rules on them (at most {MAX_SHAPES})")
    lines: list[Line] = Field([], max_length=MAX_SHAPES, description=f"counting lines (at most {MAX_SHAPES})")
    ground: list[GroundCalibration] = Field(
        [], max_length=MAX_SHAPES, description="ground-plane calibrations, at most one per camera (absent: no metres)"
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> ZonesDoc:
        seen: set[tuple[str, str]] = set()
        for item in [*self.zones, *self.lines]:
            key = (item.camera, item.id)
            if key in seen:
                raise ValueError(f"duplicate zone/line id {item.id!r} on camera {item.camera!r}")
            seen.add(key)
        return self

    @model_validator(mode="after")
    def _ground_under_zones(self) -> ZonesDoc:
        cameras = [g.camera for g in self.ground]
        if len(set(cameras)) != len(cameras):
            raise ValueError("ground: at most one calibration per camera")
        for zone in self.zones:
            plane = self.ground_plane(zone.camera)
            if plane is not None and not plane.on_ground(np.asarray(zone.polygon)).all():
                raise ValueError(
                    f"zone {zone.id!r} on camera {zone.camera!r} reaches above the horizon of the camera's ground "
                    "calibration: draw it on the ground, or check the calibration's points"
                )
        return self

    def ground_plane(self, camera_id: str) -> GroundPlane | None:
        """The camera's ground plane, or None when the document does not calibrate it."""
        return next((g.plane() for g in self.ground if g.camera == camera_id), None)

    def ruleless_zones(self) -> list[str]:
        """Ids of the zones that turn on no rule (no `intrusion:`, `loitering:`, ... block): they watch nothing."""
        return [z.id for z in self.zones if all(getattr(z, kind.field) is None for kind in ZONE_KINDS)]

    def camera_ids(self) -> set[str]:
        return {z.camera for z in self.zones} | {line.camera for line in self.lines} | {g.camera for g in self.ground}


def load_zones(path: Path) -> ZonesDoc:
    """Read and validate a zones YAML file (validation errors propagate with field paths; ValueError for a
    file that is not a mapping). An empty file is a document without zones."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"expected a mapping at the top level (zones:, lines:), got a YAML {type(raw).__name__}")
    return ZonesDoc.model_validate(raw or {})

