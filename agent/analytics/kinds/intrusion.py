"""Zone intrusion: a watched subject's anchor inside a forbidden polygon for at least a dwell time."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.analytics.base import DwellRule, Settings
from agent.analytics.registry import Kind, per_area
from agent.core.events import Body, ClassName, Id, Point, State, Tally


class IntrusionBody(Body):
    """A subject of a watched class stayed inside a forbidden zone for at least its dwell time."""

    kind: Literal["intrusion"] = "intrusion"
    zone_id: Id
    state: State = Field(description="started when the dwell is reached, ended when the subject leaves or is lost")
    class_name: ClassName
    point: Point = Field(description="anchor point (bottom centre of the box)")
    duration_ms: int = Field(ge=0, description="time inside the zone so far (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms, self.class_name)


class IntrusionSettings(Settings):
    dwell_s: float = Field(1.0, ge=0.0, le=3600.0, description="time inside the zone before the intrusion starts")
    exit_grace_s: float = Field(
        1.0, ge=0.0, le=60.0, description="time outside (or unseen) before the intrusion ends; absorbs jitter at the edge"
    )


class IntrusionRule(DwellRule):
    """One zone of one camera: `started` once the dwell is reached, `ended` when the subject leaves."""

    body = IntrusionBody


KIND = Kind(name="intrusion", body=IntrusionBody, settings=IntrusionSettings, field="intrusion", description="raise intrusion events (absent: off)",
            build=per_area(IntrusionRule))  # fmt: skip
