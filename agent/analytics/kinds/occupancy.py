"""Zone occupancy: the number of subjects per class in a zone, debounced so it does not flap."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from agent.analytics.base import Settings, in_zone
from agent.analytics.crowd import SMOOTH_S, CrowdedSettings, ZoneCount
from agent.analytics.registry import Area, Kind
from agent.core.events import Body, ClassName, Event, Id, Tally
from agent.core.types import Tracks
from agent.core.units import NS_PER_S


class ZoneOccupancyBody(Body):
    """The number of subjects of a class in a zone changed (debounced by hysteresis)."""

    kind: Literal["zone_occupancy"] = "zone_occupancy"
    zone_id: Id
    class_name: ClassName
    count: int = Field(ge=0, description="subjects in the zone now")
    previous: int = Field(ge=0, description="the count last reported")

    def tally(self) -> Tally:
        return Tally(self.zone_id, self.class_name, peak=self.count)


class OccupancySettings(Settings):
    settle_s: float = Field(
        1.0, ge=0.0, le=600.0, description="a new count is reported only after holding this long (hysteresis in time)"
    )
    min_change: int = Field(1, ge=1, le=1000, description="smallest change from the last reported count worth an event")
    crowded: CrowdedSettings | None = Field(
        None, description="count persons as crowd_density's crowded mode does (boxes seen now, smoothed, on tiles; "
        "the area estimate where it takes over) instead of confirmed tracks; other classes still by tracks"
    )


class OccupancyRule:
    """One zone of one camera. A count that stays away from the last reported one for
    `settle_s` is reported. State is bounded by the number of watched classes."""

    def __init__(self, area: Area, settings: OccupancySettings) -> None:
        self.rule_id = area.id
        self._polygon = polygon = area.geometry
        self._classes = classes = area.classes
        crowded = settings.crowded
        self.tiles = None if crowded is None else (polygon, crowded.zoom)
        self._edges = area.analyzers.get("crowd") if crowded is not None and crowded.area_estimate else None
        persons = classes.only({"person"}).class_ids
        self._crowd = None if crowded is None or not len(persons) else ZoneCount(polygon, persons, SMOOTH_S, self._edges is not None)
        self._settle_ns = int(settings.settle_s * NS_PER_S)
        self._min_change = settings.min_change
        self._reported: dict[int, int] = {}
        # class id -> when the count first moved away from the reported one
        self._deviating_since: dict[int, int] = {}

    def update(self, tracks: Tracks) -> list[Event]:
        inside = in_zone(tracks, self._polygon, self._classes)
        counts = np.bincount(tracks.detections.class_id[inside])
        now = {cid: int(n) for cid, n in enumerate(counts.tolist()) if n}
        if self._crowd is not None:
            self._crowd.update(tracks, None if self._edges is None else self._edges.edges)
            now.update(dict.fromkeys(self._crowd.person_ids.tolist(), 0))
            now[int(self._crowd.person_ids[0])] = self._crowd.count
        events: list[Event] = []
        for cid in self._classes.class_ids.tolist():
            count = now.get(cid, 0)
            reported = self._reported.get(cid, 0)
            if abs(count - reported) < self._min_change:
                self._deviating_since.pop(cid, None)
                continue
            since = self._deviating_since.setdefault(cid, tracks.pts_ns)
            if tracks.pts_ns - since >= self._settle_ns:
                del self._deviating_since[cid]
                self._reported[cid] = count
                body = ZoneOccupancyBody(
                    zone_id=self.rule_id, class_name=self._classes.name(cid), count=count, previous=reported
                )
                events.append(Event(tracks.camera_id, tracks.pts_ns, body))
        return events

    def state_size(self) -> int:
        # reported zero counts carry no state
        return len(self._deviating_since) + sum(1 for c in self._reported.values() if c)


KIND = Kind(name="zone_occupancy", body=ZoneOccupancyBody, settings=OccupancySettings, field="occupancy", description="report occupancy changes (absent: off)",
            build=OccupancyRule)  # fmt: skip
