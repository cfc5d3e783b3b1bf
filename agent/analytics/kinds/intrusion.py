"""Zone intrusion: a watched subject's anchor inside a forbidden polygon for at least a dwell time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agent.core.events import Event, IntrusionBody
from agent.core.geometry import points_in_polygon
from agent.analytics.base import NS_PER_MS, NS_PER_S, ClassSelector
from agent.core.types import Tracks


class IntrusionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dwell_s: float = Field(1.0, ge=0.0, le=3600.0, description="time inside the zone before the intrusion starts")
    exit_grace_s: float = Field(
        1.0, ge=0.0, le=60.0, description="time outside (or unseen) before the intrusion ends; absorbs jitter at the edge"
    )


@dataclass(slots=True)
class _Presence:
    entered_ns: int
    last_inside_ns: int
    class_name: str
    point: tuple[float, float]
    started: bool = False


class IntrusionRule:
    """One zone of one camera: `started` once the dwell is reached, `ended` when the subject leaves."""

    def __init__(self, zone_id: str, polygon: np.ndarray, classes: ClassSelector, settings: IntrusionSettings) -> None:
        self.rule_id = zone_id
        self._polygon = polygon
        self._classes = classes
        self._dwell_ns = int(settings.dwell_s * NS_PER_S)
        self._grace_ns = int(settings.exit_grace_s * NS_PER_S)
        self._present: dict[int, _Presence] = {}

    def update(self, tracks: Tracks) -> list[Event]:
        now = tracks.pts_ns
        anchors = tracks.anchors_norm()
        inside = points_in_polygon(anchors, self._polygon) & self._classes.mask(tracks)
        events: list[Event] = []
        for row in np.flatnonzero(inside):
            tid = int(tracks.track_id[row])
            point = (float(anchors[row, 0]), float(anchors[row, 1]))
            name = self._classes.name(tracks.detections.class_id[row])
            p = self._present.setdefault(tid, _Presence(now, now, name, point))
            p.last_inside_ns, p.point = now, point
            if not p.started and now - p.entered_ns >= self._dwell_ns:
                p.started = True
                events.append(self._event(tracks.camera_id, now, tid, p, "started"))
        ended = set(tracks.ended.tolist())
        for tid, p in list(self._present.items()):
            if tid in ended or now - p.last_inside_ns > self._grace_ns:
                del self._present[tid]
                if p.started:
                    events.append(self._event(tracks.camera_id, now, tid, p, "ended"))
        return events

    def state_size(self) -> int:
        return len(self._present)

    def _event(self, camera_id: str, now: int, tid: int, p: _Presence, state: str) -> Event:
        end_ns = now if state == "started" else p.last_inside_ns
        body = IntrusionBody(
            zone_id=self.rule_id,
            state=state,
            class_name=p.class_name,
            point=p.point,
            duration_ms=(end_ns - p.entered_ns) // NS_PER_MS,
        )
        return Event(camera_id, now, body, tid)
