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
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from agent.geometry import polygon_area, polygon_is_simple
from agent.rules.base import ClassSelector, Rule
from agent.rules.camera import CameraRules
from agent.rules.intrusion import IntrusionRule, IntrusionSettings
from agent.rules.line_count import LineCountRule, LineSettings
from agent.rules.occupancy import OccupancyRule, OccupancySettings

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
    if polygon_area(poly) <= 1e-6:
        raise ValueError("polygon has no area (its points are collinear or repeated)")
    if not polygon_is_simple(poly):
        raise ValueError("polygon is not simple: two of its edges cross or touch")
    return points


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Zone(_Strict):
    id: RuleId = Field(description="zone id, unique per camera; appears in events")
    camera: RuleId = Field(description="id of the camera the zone belongs to")
    polygon: Annotated[list[NormXY], AfterValidator(_simple_polygon)] = Field(
        description="vertices in order, normalised 0..1; at least 3, not self-intersecting"
    )
    classes: list[str] = Field(["person"], min_length=1, description="class names or class-map categories watched")
    intrusion: IntrusionSettings | None = Field(None, description="raise intrusion events (absent: off)")
    occupancy: OccupancySettings | None = Field(None, description="report occupancy changes (absent: off)")


class Line(_Strict):
    id: RuleId = Field(description="line id, unique per camera; appears in events")
    camera: RuleId = Field(description="id of the camera the line belongs to")
    points: tuple[NormXY, NormXY] = Field(
        description="from a to b, normalised; crossing from the left of a->b to its right (on screen) is `in`"
    )
    classes: list[str] = Field(["person"], min_length=1, description="class names or class-map categories counted")
    counting: LineSettings = Field(LineSettings(), description="crossing detection settings")

    @model_validator(mode="after")
    def _distinct(self) -> Line:
        if self.points[0] == self.points[1]:
            raise ValueError("a line needs two distinct points")
        return self


class ZonesDoc(_Strict):
    version: int = Field(1, ge=1, description="zones version, increased by every change (shown in status)")
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


def build_rules(doc: ZonesDoc, camera_id: str, class_names: list[str], class_map: dict[str, str]) -> CameraRules:
    """Instantiate the rules of one camera for a model's classes."""
    rules: list[Rule] = []
    for zone in (z for z in doc.zones if z.camera == camera_id):
        polygon = np.asarray(zone.polygon, dtype=np.float32)
        classes = ClassSelector(zone.classes, class_names, class_map)
        if zone.intrusion is not None:
            rules.append(IntrusionRule(zone.id, polygon, classes, zone.intrusion))
        if zone.occupancy is not None:
            rules.append(OccupancyRule(zone.id, polygon, classes, zone.occupancy))
    for line in (ln for ln in doc.lines if ln.camera == camera_id):
        classes = ClassSelector(line.classes, class_names, class_map)
        rules.append(LineCountRule(line.id, np.asarray(line.points, dtype=np.float32), classes, line.counting))
    return CameraRules(rules)
