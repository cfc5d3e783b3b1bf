"""The event kinds: each is declared once, in its own file under kinds/, as a `Kind`.

A kind names its wire body, its settings (the block a zone carries to turn
the rule on), and how its rule is built for one zone or line. The zones
document (agent/settings/zones.py), the wire envelope (agent/wire/envelope.py)
and the camera's rule set (agent/analytics/camera.py) are all generated from
`kinds.ALL`, so a new kind is one new file plus one line there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel

from agent.analytics.base import ClassSelector, Rule
from agent.core.events import Body
from agent.core.ground import GroundPlane


class Analyzers(Protocol):
    """The frame-level analyzers of one camera, created on first use and shared by its zones."""

    def get(self, name: str) -> Any: ...


@dataclass(frozen=True)
class Area:
    """Where one rule watches: a zone (`geometry` its polygon (M, 2)) or a line ((2, 2), from a to b),
    normalised; the classes it watches; its camera's shared analyzers; and its camera's ground plane."""

    id: str
    geometry: np.ndarray
    classes: ClassSelector
    analyzers: Analyzers
    ground: GroundPlane | None = None  # the camera's ground plane, when the zones document calibrates it


@dataclass(frozen=True)
class Kind:
    """One event kind: `name` on the wire (body `kind`, topic suffix); `field` the zone's (or line's)
    settings block that turns it on; `requires` the classes a zone must watch for it to make sense."""

    name: str
    body: type[Body]
    settings: type[BaseModel]
    field: str
    description: str
    build: Callable[[Area, Any], Rule]
    on: Literal["zone", "line"] = "zone"
    requires: frozenset[str] = frozenset()


def per_area(rule: Callable[[str, np.ndarray, ClassSelector, Any], Rule]) -> Callable[[Area, Any], Rule]:
    """The build of a rule that needs only its area's id, geometry and classes, and its settings."""
    return lambda area, settings: rule(area.id, area.geometry, area.classes, settings)
