"""All the rules of one camera behind one call, so the pipeline knows nothing of rule kinds."""

from __future__ import annotations

from agent.events import Event
from agent.rules.base import Rule
from agent.types import Frame, Tracks


class CameraRules:
    """Runs every rule of a camera on each frame's tracks (and, for frame-level
    rules, on the frame itself)."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    def update(self, tracks: Tracks, frame: Frame) -> list[Event]:
        return [event for rule in self.rules for event in rule.update(tracks)]

    def state_size(self) -> int:
        return sum(rule.state_size() for rule in self.rules)
