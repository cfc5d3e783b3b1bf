"""All the rules of one camera behind one call, so the pipeline knows nothing of rule kinds; and how
they are built from the zones document through the kinds registry."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agent.analytics.analyzers.settings import AnalysisSettings
from agent.analytics.base import ClassSelector, Rule
from agent.analytics.kinds import LINE_KINDS, ZONE_KINDS
from agent.analytics.registry import Area
from agent.core.events import Event
from agent.core.ground import GroundPlane
from agent.core.types import Frame, Tracks
from agent.core.units import NS_PER_S


class Analyzer(Protocol):
    """A frame-level detector whose results the rules of the camera read."""

    def observe(self, small_bgr: np.ndarray, pts_ns: int) -> None:
        """small_bgr: uint8 (h, w, 3), the frame downscaled once for every analyzer."""
        ...


@dataclass(slots=True)
class Scheduled:
    """An analyzer and how often it looks at the frame."""

    analyzer: Analyzer
    fps: float
    last_ns: int | None = None

    def due(self, pts_ns: int) -> bool:
        return self.last_ns is None or pts_ns - self.last_ns >= NS_PER_S / self.fps


class CameraRules:
    """Runs every rule of a camera on each frame's tracks, after feeding the analyzers that
    are due a frame downscaled once to `width_px`."""

    def __init__(self, rules: list[Rule], analyzers: list[Scheduled] | None = None, width_px: int = 192) -> None:
        self.rules = rules
        self.analyzers = analyzers or []
        self.width_px = width_px

    @property
    def needs_fresh_boxes(self) -> bool:
        """Whether a rule here reads box shapes that a tracker's prediction cannot give (its class says
        `needs_fresh_boxes = True`): the camera is then detected at every frame."""
        return any(getattr(rule, "needs_fresh_boxes", False) for rule in self.rules)

    @property
    def tiles(self) -> list[tuple[np.ndarray, float]]:
        """(zone polygon, zoom) of each rule that asks for its zone to be detected on tiles too (a rule
        class's `tiles` attribute: crowd_density's crowded mode)."""
        return [t for rule in self.rules if (t := getattr(rule, "tiles", None)) is not None]

    def update(self, tracks: Tracks, frame: Frame, small: np.ndarray | None = None) -> list[Event]:
        """`small`: the frame already downscaled to `width_px`, if the frame loop made it."""
        due = [a for a in self.analyzers if a.due(frame.pts_ns)]
        if due:
            if small is None:
                # OpenCV only where frames are analysed: building rules (a config check) needs none
                from agent.analytics.analyzers.downscale import downscale

                small = downscale(frame.image, self.width_px)
            for a in due:
                a.analyzer.observe(small, frame.pts_ns)
                a.last_ns = frame.pts_ns
        return [event for rule in self.rules for event in rule.update(tracks)]

    def state_size(self) -> int:
        return sum(rule.state_size() for rule in self.rules)


# The frame-level analyzers a kind may ask for by name: their class, and the `AnalysisSettings`
# fields `<name>` (settings) and `<name>_fps` (rate). Imported on first use: OpenCV is loaded
# only where a camera runs one.
ANALYZERS = {
    "fire": "agent.analytics.analyzers.fire:FireAnalyzer",
    "static": "agent.analytics.analyzers.static:StaticAnalyzer",
    "silhouette": "agent.analytics.analyzers.silhouette:SilhouetteAnalyzer",
    "crowd": "agent.analytics.analyzers.crowd:CrowdAnalyzer",
}


class CameraAnalyzers:
    """The analyzers of one camera, each created when a zone's rule first asks for it and shared after."""

    def __init__(self, analysis: AnalysisSettings) -> None:
        self._analysis = analysis
        self.scheduled: dict[str, Scheduled] = {}

    def get(self, name: str) -> Any:
        if name not in self.scheduled:
            module, cls = ANALYZERS[name].split(":")
            analyzer = getattr(importlib.import_module(module), cls)(getattr(self._analysis, name))
            self.scheduled[name] = Scheduled(analyzer, getattr(self._analysis, f"{name}_fps"))
        return self.scheduled[name].analyzer


class ZonesLike(Protocol):
    """The zones document as the rules see it (agent/settings/zones.py `ZonesDoc`)."""

    analysis: AnalysisSettings
    zones: list[Any]
    lines: list[Any]

    def ground_plane(self, camera_id: str) -> GroundPlane | None: ...


def build_rules(doc: ZonesLike, camera_id: str, class_names: list[str], class_map: dict[str, str]) -> CameraRules:
    """Instantiate the rules of one camera for a model's classes: for each of its zones and lines, the rule
    of every kind whose settings block the zone carries. Raises ValueError for a class the model lacks."""
    analyzers = CameraAnalyzers(doc.analysis)
    ground = doc.ground_plane(camera_id)
    rules: list[Rule] = []
    for items, kinds, shape in ((doc.zones, ZONE_KINDS, "polygon"), (doc.lines, LINE_KINDS, "points")):
        for item in (i for i in items if i.camera == camera_id):
            area = Area(item.id, np.asarray(getattr(item, shape), dtype=np.float32),
                        ClassSelector(item.classes, class_names, class_map), analyzers, ground)  # fmt: skip
            rules.extend(kind.build(area, settings) for kind in kinds if (settings := getattr(item, kind.field)) is not None)
    return CameraRules(rules, list(analyzers.scheduled.values()), doc.analysis.width_px)
