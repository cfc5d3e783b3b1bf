"""Events: what rules emit, and the versioned envelope that goes on the wire.

Privacy is structural: no field can hold bytes, strings are short and
patterned, geometry is normalised and quantised, and `encode` refuses anything
that is not an `Envelope` or that exceeds `MAX_PAYLOAD_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA = "edge.event/1"
MAX_PAYLOAD_BYTES = 4096
GRID = 1000  # geometry is quantised to 1/1000 of the frame

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="identifier")]
ClassName = Annotated[str, Field(pattern=r"^[a-z0-9_ ]{1,32}$", description="model class name")]
State = Literal["started", "ended"]


def quantise(value: float) -> float:
    """Round a normalised coordinate to the event grid (and clip it to 0..1)."""
    return round(min(max(float(value), 0.0), 1.0) * GRID) / GRID


Coord = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(quantise)]
Point = Annotated[tuple[Coord, Coord], Field(description="normalised (x, y), 0..1, quantised to 1/1000")]
Box = Annotated[
    tuple[Coord, Coord, Coord, Coord], Field(description="normalised (x1, y1, x2, y2), 0..1, quantised to 1/1000")
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntrusionBody(_Body):
    """A subject of a watched class stayed inside a forbidden zone for at least its dwell time."""

    kind: Literal["intrusion"] = "intrusion"
    zone_id: Id
    state: State = Field(description="started when the dwell is reached, ended when the subject leaves or is lost")
    class_name: ClassName
    point: Point = Field(description="anchor point (bottom centre of the box)")
    duration_ms: int = Field(ge=0, description="time inside the zone so far (started) or in all (ended)")


class LineCountBody(_Body):
    """A subject crossed a counting line; counts are cumulative per line and class since start."""

    kind: Literal["line_count"] = "line_count"
    line_id: Id
    direction: Literal["in", "out"] = Field(description="in: from the line's left side to its right side")
    class_name: ClassName
    point: Point = Field(description="anchor point just after the crossing")
    count_in: int = Field(ge=0)
    count_out: int = Field(ge=0)


class ZoneOccupancyBody(_Body):
    """The number of subjects of a class in a zone changed (debounced by hysteresis)."""

    kind: Literal["zone_occupancy"] = "zone_occupancy"
    zone_id: Id
    class_name: ClassName
    count: int = Field(ge=0, description="subjects in the zone now")
    previous: int = Field(ge=0, description="the count last reported")


class LoiteringBody(_Body):
    """A subject stayed in a zone longer than the zone's loitering time."""

    kind: Literal["loitering"] = "loitering"
    zone_id: Id
    state: State = Field(description="started when the dwell is reached, ended when the subject leaves or is lost")
    class_name: ClassName
    point: Point = Field(description="anchor point (bottom centre of the box)")
    duration_ms: int = Field(ge=0, description="time in the zone so far (started) or in all (ended)")


class WrongWayBody(_Body):
    """A subject moved against the zone's allowed direction for at least the zone's distance."""

    kind: Literal["wrong_way"] = "wrong_way"
    zone_id: Id
    state: State = Field(description="started once the distance is covered, ended when the subject leaves or is lost")
    class_name: ClassName
    point: Point = Field(description="anchor point (bottom centre of the box)")
    distance: float = Field(ge=0.0, le=2.0, description="normalised distance covered against the allowed direction")
    duration_ms: int = Field(ge=0, description="time since the subject started going the wrong way")


class CrowdDensityBody(_Body):
    """The number of persons in a zone (per m² where the zone declares its area) crossed the threshold."""

    kind: Literal["crowd_density"] = "crowd_density"
    zone_id: Id
    state: State = Field(description="started above the threshold, ended below its release level")
    count: int = Field(ge=0, description="persons in the zone")
    value: float = Field(ge=0.0, le=1000.0, description="persons per m² (unit per_m2) or per zone (unit per_zone)")
    unit: Literal["per_m2", "per_zone"]
    duration_ms: int = Field(ge=0, description="time above the threshold so far (started) or in all (ended)")


class CrowdMovementBody(_Body):
    """The subjects of a zone suddenly moved much faster together than their recent baseline."""

    kind: Literal["crowd_movement"] = "crowd_movement"
    zone_id: Id
    state: State = Field(description="started at the sudden change, ended when the motion is back to the baseline")
    count: int = Field(ge=0, description="moving subjects in the zone")
    value: float = Field(ge=0.0, le=1000.0, description="speed now over the baseline speed (a ratio)")
    duration_ms: int = Field(ge=0, description="time since the change (started) or in all (ended)")


class AbandonedObjectBody(_Body):
    """An object stayed still with no person near it for at least the zone's time."""

    kind: Literal["abandoned_object"] = "abandoned_object"
    zone_id: Id
    state: State = Field(description="started once unattended long enough, ended when the object is gone or attended")
    source: Literal["detection", "foreground"] = Field(description="a detected object class or a static foreground region")
    box: Box = Field(description="the object's box")
    duration_ms: int = Field(ge=0, description="time unattended so far (started) or in all (ended)")


class PersonDownBody(_Body):
    """A person went from upright to lying and stayed down."""

    kind: Literal["person_down"] = "person_down"
    zone_id: Id
    state: State = Field(description="started once down long enough, ended when the person is up again or lost")
    box: Box = Field(description="the person's box while down")
    duration_ms: int = Field(ge=0, description="time down so far (started) or in all (ended)")


class WeaponBody(_Body):
    """A detection of a class that the model's class map marks as a weapon persisted."""

    kind: Literal["weapon"] = "weapon"
    zone_id: Id
    state: State = Field(description="started once the detection persisted, ended when it is no longer seen")
    class_name: ClassName
    box: Box = Field(description="the detection's box")
    duration_ms: int = Field(ge=0, description="time seen so far (started) or in all (ended)")


class FireBody(_Body):
    """Flames seen in a zone (fire-coloured flickering pixels, or a fire class of the model) persisted."""

    kind: Literal["fire"] = "fire"
    zone_id: Id
    state: State = Field(description="started once the flames persisted, ended when they are gone")
    source: Literal["colour", "detection"] = Field(description="colour + flicker analysis or a fire class of the model")
    box: Box = Field(description="box around the flames seen last")
    value: float = Field(ge=0.0, le=1.0, description="share of the zone covered by flames")
    duration_ms: int = Field(ge=0, description="time burning so far (started) or in all (ended)")


# one aggregate message stays under the payload cap even with the longest ids: a tally is
# at most ~290 B of JSON, the envelope ~300 B
MAX_TALLIES = 12


class ZoneTally(_Body):
    """What one kind of rule saw in one zone or line during the interval."""

    area_id: Id = Field(description="the zone or line id")
    event_kind: ClassName = Field(description="the rule's event kind (intrusion, line_count, ...)")
    class_name: ClassName | None = Field(None, description="the watched class, where the rule has one")
    direction: Literal["in", "out"] | None = Field(None, description="line crossings only")
    count: int = Field(ge=0, description="occurrences that started in the interval (crossings for a line)")
    duration_ms: int = Field(ge=0, description="summed duration of the occurrences that ended in the interval")
    peak: int | None = Field(None, ge=0, description="the highest count a counting rule reported in the interval")


class AggregateBody(_Body):
    """Counts and durations per zone over one interval of one camera: never a subject."""

    kind: Literal["aggregate"] = "aggregate"
    start_ms: int = Field(ge=0, description="interval start, UTC milliseconds")
    interval_ms: int = Field(gt=0, description="interval length")
    tallies: list[ZoneTally] = Field(max_length=MAX_TALLIES, description="empty: nothing happened")


EventBody = Annotated[
    Union[
        IntrusionBody,
        LineCountBody,
        ZoneOccupancyBody,
        LoiteringBody,
        WrongWayBody,
        CrowdDensityBody,
        CrowdMovementBody,
        AbandonedObjectBody,
        PersonDownBody,
        WeaponBody,
        FireBody,
        AggregateBody,
    ],
    Field(discriminator="kind"),
]
EVENT_KINDS: tuple[str, ...] = tuple(b.model_fields["kind"].default for b in EventBody.__origin__.__args__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Event:
    """What a rule emits. Internal: `track_id` never reaches the wire (see `privacy.subject`)."""

    camera_id: str
    pts_ns: int
    body: _Body
    track_id: int | None = None


class Envelope(BaseModel):
    """The one versioned envelope around every event on the wire."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: Literal["edge.event/1"] = Field(SCHEMA, alias="schema", description="envelope schema and version")
    event_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}:[0-9a-f]{8,32}:[0-9]{1,20}$")] = Field(
        description="device:boot:seq, stable across retries so consumers can de-duplicate"
    )
    device_id: Id
    camera_id: Id
    seq: int = Field(ge=0, description="per-boot sequence number of this device's events")
    ts: int = Field(ge=0, description="event time, UTC milliseconds since the epoch")
    subject: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = Field(
        None, description="ephemeral salted subject id, rotated at least hourly, never shared across cameras"
    )
    body: EventBody

    @property
    def kind(self) -> str:
        return self.body.kind


def encode(envelope: Envelope) -> bytes:
    """Serialise an envelope for MQTT; refuses other types and oversized payloads."""
    if not isinstance(envelope, Envelope):
        raise TypeError(f"only Envelope can be published, got {type(envelope).__name__}")
    payload = envelope.model_dump_json(by_alias=True).encode()
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"event payload of {len(payload)} B exceeds the {MAX_PAYLOAD_BYTES} B cap")
    return payload

