"""Zone intrusion: a watched subject's anchor inside a forbidden polygon for at least a dwell time."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.analytics.base import DwellBody, DwellRule, Settings
from agent.analytics.registry import Kind, per_area


class IntrusionBody(DwellBody):
    """A subject of a watched class stayed inside a forbidden zone for at least its dwell time."""

    kind: Literal["intrusion"] = "intrusion"


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
