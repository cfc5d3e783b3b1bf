"""What rules emit: the body types' shared base and field types, and the internal `Event`.

Privacy is structural: no field can hold bytes, strings are short and
patterned, geometry is normalised and quantised. Each event kind declares its
own body (agent/analytics/kinds/); the wire envelope around them is
agent/wire/envelope.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

GRID = 1000  # geometry is quantised to 1/1000 of the frame

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="identifier")]
ClassName = Annotated[str, Field(pattern=r"^[a-z0-9_ ]{1,32}$", description="model class name")]
State = Literal["started", "ended"]
Direction = Literal["in", "out"]


def quantise(value: float) -> float:
    """Round a normalised coordinate to the event grid (and clip it to 0..1)."""
    return round(min(max(float(value), 0.0), 1.0) * GRID) / GRID


Coord = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(quantise)]
Point = Annotated[tuple[Coord, Coord], Field(description="normalised (x, y), 0..1, quantised to 1/1000")]
Box = Annotated[
    tuple[Coord, Coord, Coord, Coord], Field(description="normalised (x1, y1, x2, y2), 0..1, quantised to 1/1000")
]


@dataclass(frozen=True, slots=True)
class Tally:
    """How one event counts in aggregates-only mode (agent/analytics/aggregates.py)."""

    area_id: str  # the zone or line
    class_name: str | None = None
    direction: Direction | None = None
    count: int = 0  # occurrences that started (or crossings)
    duration_ms: int = 0  # duration of an occurrence that ended
    peak: int | None = None  # a counting rule's count now

    @classmethod
    def situation(cls, area_id: str, state: str, duration_ms: int, class_name: str | None = None,
                  peak: int | None = None) -> Tally:
        """A started/ended situation: a start counts one, an end adds its duration."""
        return cls(area_id, class_name, None, int(state == "started"), duration_ms if state == "ended" else 0, peak)  # fmt: skip


class Body(BaseModel):
    """The base of every event body: strict, frozen, `kind` its discriminator on the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str

    def tally(self) -> Tally | None:
        """How this event counts in aggregates-only mode; None: it does not."""
        return None


@dataclass(frozen=True, slots=True)
class Event:
    """What a rule emits. Internal: `track_id` never reaches the wire (see `privacy.subject`)."""

    camera_id: str
    pts_ns: int
    body: Body
    track_id: int | None = None
