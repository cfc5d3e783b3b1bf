"""Loitering: a watched subject stays in a zone longer than a dwell time."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.analytics.base import DwellBody, DwellRule, Settings
from agent.analytics.registry import Kind, per_area


class LoiteringBody(DwellBody):
    """A subject stayed in a zone longer than the zone's loitering time."""

    kind: Literal["loitering"] = "loitering"


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
