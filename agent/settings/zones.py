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

from agent.analytics.analyzers.fire import FireAnalyzer, FireAnalyzerSettings
from agent.analytics.analyzers.static import StaticAnalyzer, StaticAnalyzerSettings
from agent.core.geometry import polygon_area, polygon_is_simple
from agent.analytics.kinds.abandoned import AbandonedRule, AbandonedSettings
from agent.analytics.base import ClassSelector, Rule
from agent.analytics.camera import CameraRules, Scheduled
from agent.analytics.kinds.crowd_density import CrowdDensityRule, CrowdDensitySettings
from agent.analytics.kinds.crowd_movement import CrowdMovementRule, CrowdMovementSettings
from agent.analytics.kinds.fire import FIRE_CATEGORIES, FireRule, FireSettings
from agent.analytics.kinds.intrusion import IntrusionRule, IntrusionSettings
from agent.analytics.kinds.line_count import LineCountRule, LineSettings
from agent.analytics.kinds.loitering import LoiteringRule, LoiteringSettings
from agent.analytics.kinds.occupancy import OccupancyRule, OccupancySettings
from agent.analytics.kinds.person_down import PersonDownRule, PersonDownSettings
from agent.analytics.kinds.weapon import WeaponRule, WeaponSettings
from agent.analytics.kinds.wrong_way import WrongWayRule, WrongWaySettings

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


class Zone(_Strict):
    id: RuleId = Field(description="zone id, unique per camera; appears in events")
    camera: RuleId = Field(description="id of the camera the zone belongs to")
    polygon: Annotated[list[NormXY], AfterValidator(_simple_polygon)] = Field(
        description="vertices in order, normalised 0..1; at least 3, not self-intersecting"
    )
    classes: list[str] = Field(["person"], min_length=1, description="class names or class-map categories watched")
    intrusion: IntrusionSettings | None = Field(None, description="raise intrusion events (absent: off)")
    occupancy: OccupancySettings | None = Field(None, description="report occupancy changes (absent: off)")
    loitering: LoiteringSettings | None = Field(None, description="raise loitering events (absent: off)")
    wrong_way: WrongWaySettings | None = Field(None, description="raise wrong-way events (absent: off)")
    crowd_density: CrowdDensitySettings | None = Field(None, description="raise crowd density events (absent: off)")
    crowd_movement: CrowdMovementSettings | None = Field(None, description="raise crowd movement events (absent: off)")
    abandoned: AbandonedSettings | None = Field(
        None, description="raise abandoned-object events (absent: off); objects are the zone's non-person classes "
        "and static foreground regions, and 'person' must be among the classes so owners are seen"
    )
    person_down: PersonDownSettings | None = Field(None, description="raise person-down events (absent: off)")
    weapon: WeaponSettings | None = Field(
        None, description="raise weapon events for the zone's classes mapped to 'weapon' (absent: off)"
    )
    fire: FireSettings | None = Field(
        None, description="raise fire events from the colour analyzer and the zone's fire/smoke classes (absent: off)"
    )

    @model_validator(mode="after")
    def _owners_watched(self) -> Zone:
        if self.abandoned is not None and "person" not in self.classes:
            raise ValueError("abandoned needs 'person' in classes: a person near an object attends it")
        return self


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


class AnalysisSettings(_Strict):
    width_px: int = Field(
        192, ge=64, le=1920, description="width of the frame the frame-level analyzers see, downscaled once per frame"
    )
    fire_fps: float = Field(
        10.0, gt=0.0, le=60.0, description="analyses per second of the fire analyzer (flicker needs >= 4; "
        "10 halves the onset delay's sampling jitter for ~1.5 ms per analysis at the default width)"
    )
    static_fps: float = Field(2.0, gt=0.0, le=60.0, description="analyses per second of the static-foreground analyzer")
    fire: FireAnalyzerSettings = Field(FireAnalyzerSettings(), description="fire colour and flicker settings")
    static: StaticAnalyzerSettings = Field(StaticAnalyzerSettings(), description="static foreground settings")


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


def build_rules(doc: ZonesDoc, camera_id: str, class_names: list[str], class_map: dict[str, str]) -> CameraRules:
    """Instantiate the rules of one camera for a model's classes, with one analyzer of each
    kind shared by the camera's zones that need it."""
    rules: list[Rule] = []
    zones = [z for z in doc.zones if z.camera == camera_id]
    a = doc.analysis
    fire = FireAnalyzer(a.fire) if any(z.fire for z in zones) else None
    static = StaticAnalyzer(a.static) if any(z.abandoned for z in zones) else None
    for zone in zones:
        polygon = np.asarray(zone.polygon, dtype=np.float32)
        classes = ClassSelector(zone.classes, class_names, class_map)
        for settings, rule in (
            (zone.intrusion, IntrusionRule),
            (zone.occupancy, OccupancyRule),
            (zone.loitering, LoiteringRule),
            (zone.wrong_way, WrongWayRule),
            (zone.person_down, PersonDownRule),
        ):
            if settings is not None:
                rules.append(rule(zone.id, polygon, classes, settings))
        persons = classes.only({"person"})
        if zone.crowd_density is not None:
            rules.append(CrowdDensityRule(zone.id, polygon, persons, zone.crowd_density))
        if zone.crowd_movement is not None:
            rules.append(CrowdMovementRule(zone.id, polygon, classes, zone.crowd_movement))
        if zone.weapon is not None:
            rules.append(WeaponRule(zone.id, polygon, classes.only({"weapon"}), zone.weapon))
        if zone.fire is not None:
            rules.append(FireRule(zone.id, polygon, classes.only(FIRE_CATEGORIES), fire, zone.fire))
        if zone.abandoned is not None:
            objects = classes.only({"person"}, exclude=True)
            rules.append(AbandonedRule(zone.id, polygon, objects, persons, static, zone.abandoned))
    for line in (ln for ln in doc.lines if ln.camera == camera_id):
        classes = ClassSelector(line.classes, class_names, class_map)
        rules.append(LineCountRule(line.id, np.asarray(line.points, dtype=np.float32), classes, line.counting))
    analyzers = [Scheduled(an, fps) for an, fps in ((fire, a.fire_fps), (static, a.static_fps)) if an is not None]
    return CameraRules(rules, analyzers, a.width_px)
