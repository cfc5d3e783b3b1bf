"""The one versioned envelope around every event on the wire, and its serialiser.

Privacy is structural: `encode` refuses anything that is not an `Envelope` or
that exceeds `MAX_PAYLOAD_BYTES`; the body is one of the registered kinds'
bodies (agent/analytics/kinds/) or an aggregate, told apart by `kind`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from agent.analytics.aggregates import AggregateBody
from agent.analytics.kinds import ALL
from agent.core.events import Id

SCHEMA = "edge.event/1"
MAX_PAYLOAD_BYTES = 4096

BODIES = tuple(k.body for k in ALL) + (AggregateBody,)
EventBody = Annotated[Union[BODIES], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007 (built from the registry)
EVENT_KINDS: tuple[str, ...] = tuple(b.model_fields["kind"].default for b in BODIES)


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

