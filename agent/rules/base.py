"""What every rule shares: the interface, class selection and time helpers."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from agent.events import Event
from agent.types import Tracks

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


class Rule(Protocol):
    """A pure, per-camera rule. State is bounded and evicted for `tracks.ended`."""

    rule_id: str

    def update(self, tracks: Tracks) -> list[Event]: ...

    def state_size(self) -> int:
        """Number of entries held; 0 once every track has ended."""
        ...


class ClassSelector:
    """Maps the class names (or class-map categories) a zone watches to model class ids."""

    def __init__(self, names: list[str], class_names: list[str], class_map: dict[str, str]) -> None:
        wanted = set(names)
        ids = [i for i, n in enumerate(class_names) if n in wanted or class_map.get(n) in wanted]
        known = set(class_names) | set(class_map.values())
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(f"unknown classes {unknown}: the model knows {sorted(known)}")
        self.class_ids = np.asarray(ids, dtype=np.int32)
        self.class_names = class_names

    def mask(self, tracks: Tracks) -> np.ndarray:
        """bool (N,): rows of a watched class."""
        return np.isin(tracks.detections.class_id, self.class_ids)

    def name(self, class_id: int) -> str:
        return self.class_names[int(class_id)]
