"""All the rules of one camera behind one call, so the pipeline knows nothing of rule kinds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agent.analytics.analyzers.downscale import downscale
from agent.core.events import Event
from agent.analytics.base import NS_PER_S, Rule
from agent.core.types import Frame, Tracks


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

    def update(self, tracks: Tracks, frame: Frame) -> list[Event]:
        due = [a for a in self.analyzers if a.due(frame.pts_ns)]
        if due:
            small = downscale(frame.image, self.width_px)
            for a in due:
                a.analyzer.observe(small, frame.pts_ns)
                a.last_ns = frame.pts_ns
        return [event for rule in self.rules for event in rule.update(tracks)]

    def state_size(self) -> int:
        return sum(rule.state_size() for rule in self.rules)
