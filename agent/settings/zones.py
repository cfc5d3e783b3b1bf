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
    ConfigDict,
    Field,
    create_model,
    model_validator,
)

from agent.analytics.analyzers.settings import AnalysisSettings
from agent.analytics.kinds import LINE_KINDS, ZONE_KINDS
from agent.analytics.kinds.line_count import LineSettings
from agent.core.geometry import polygon_area, polygon_is_simple

NormXY = Annotated[
    tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]],
    Field(description="normalised (x, y): 0..1 of the frame width and height"),
]
RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


def _simple_polygon(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) >= 2 and points[0] == points[-1]:
        points = points[:-1]
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
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
    polygon: Annotated[list[NormXY], AfterValidator(_simple_polygon)] = Field(
        description="vertices in order, normalised 0..1; at least 3, not self-intersecting"
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
    points: tuple[NormXY, NormXY] = Field(
        description="from a to b, normalised; crossing from the left of a->b to its right (on screen) is `in`"
    )
    classes: list[str] = Field(["person"], min_length=1, description="class names or class-map categories counted")
    counting: LineSettings = Field(LineSettings(), description=LINE_KINDS[0].description)

    @model_validator(mode="after")
    def _distinct(self) -> Line:
        if self.points[0] == self.points[1]:
            raise ValueError("a line needs two distinct points")
        return self


class ZonesDoc(_Strict):
    version: int = Field(1, ge=1, description="zones version, increased by every change (shown in status)")
    analysis: AnalysisSettings = Field(AnalysisSettings(), description="frame-level analyzers, shared by all cameras")
    zones: list[Zone] = Field([], description="polygons and the rules on them")
    lines: list[Line] = Field([], description="counting lines")

    @model_validator(mode="after")
    def _unique_ids(self) -> ZonesDoc:
        seen: set[tuple[str, str]] = set()
        for item in [*self.zones, *self.lines]:
            key = (item.camera, item.id)
            if key in seen:
                raise ValueError(f"duplicate zone/line id {item.id!r} on camera {item.camera!r}")
            seen.add(key)
        return self

    def camera_ids(self) -> set[str]:
        return {z.camera for z in self.zones} | {line.camera for line in self.lines}


def load_zones(path: Path) -> ZonesDoc:
    """Read and validate a zones YAML file (validation errors propagate with field paths)."""
    with open(path, encoding="utf-8") as f:
        return ZonesDoc.model_validate(yaml.safe_load(f) or {})

