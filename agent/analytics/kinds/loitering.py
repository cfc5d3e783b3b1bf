"""Loitering: a watched subject stays in a zone longer than a dwell time."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.analytics.base import DwellRule, Settings
from agent.analytics.registry import Kind, per_area
from agent.core.events import Body, ClassName, Id, Point, State, Tally


class LoiteringBody(Body):
    """A subject stayed in a zone longer than the zone's loitering time."""

    kind: Literal["loitering"] = "loitering"
    zone_id: Id
    state: State = Field(description="started when the dwell is reached, ended when the subject leaves or is lost")
    class_name: ClassName
    point: Point = Field(description="anchor point (bottom centre of the box)")
    duration_ms: int = Field(ge=0, description="time in the zone so far (started) or in all (ended)")

    def tally(self) -> Tally:
        return Tally.situation(self.zone_id, self.state, self.duration_ms, self.class_name)


class LoiteringSettings(Settings):
    dwell_s: float = Field(
        20.0, ge=1.0, le=86400.0, description="time in the zone before loitering starts; people crossing the "
        "vtest plaza take 5-15 s, so 20 s flags only those who stay"
    )
    exit_grace_s: float = Field(
        2.0, ge=0.0, le=60.0, description="time outside (or unseen) before loitering ends; absorbs missed detections"
    )


class LoiteringRule(DwellRule):
    """One zone of one camera; one started/ended pair per subject that stays."""

    body = LoiteringBody


KIND = Kind(name="loitering", body=LoiteringBody, settings=LoiteringSettings, field="loitering", description="raise loitering events (absent: off)",
            build=per_area(LoiteringRule))  # fmt: skip
