import json

import pytest
from pydantic import ValidationError

from agent.analytics.kinds.intrusion import IntrusionBody
from agent.analytics.kinds.line_count import LineCountBody
from agent.core.events import Event
from agent.wire.envelope import Envelope, encode
from agent.wire.privacy import EnvelopeBuilder, subject_id

BODY = LineCountBody(line_id="l1", direction="in", class_name="person", point=(0.12345, 0.5), count_in=1, count_out=0)


def test_envelope_round_trip_and_quantised_geometry():
    env = EnvelopeBuilder("dev-1", "0123456789abcdef", b"k" * 32).build(Event("cam", 1_700_000_000_123_456_789, BODY, 7))
    payload = json.loads(encode(env))
    assert payload["schema"] == "edge.event/1"
    assert payload["event_id"] == "dev-1:0123456789abcdef:1"
    assert payload["ts"] == 1_700_000_000_123
    assert payload["body"]["point"] == [0.123, 0.5]
    assert Envelope.model_validate(payload) == env


def test_subject_is_salted_rotated_and_per_camera():
    key = b"s" * 32
    hour = 3600 * 10**9
    a = subject_id(key, "cam1", 7, 0, 3600)
    assert a != "7" and len(a) == 16
    assert subject_id(key, "cam1", 7, hour - 1, 3600) == a  # same period
    assert subject_id(key, "cam1", 7, hour, 3600) != a  # rotated
    assert subject_id(key, "cam2", 7, 0, 3600) != a  # never shared across cameras
    assert subject_id(b"t" * 32, "cam1", 7, 0, 3600) != a  # depends on the boot secret


def test_a_situation_ends_with_the_subject_it_started_with_across_a_rotation():
    b = EnvelopeBuilder("dev", "00ff00ff", b"k" * 32, rotation_s=60)
    minute = 60 * 10**9

    def intrusion(state: str, zone: str = "z") -> IntrusionBody:
        return IntrusionBody(zone_id=zone, state=state, class_name="person", point=(0.1, 0.2), duration_ms=0)

    started = b.build(Event("cam", minute - 10**9, intrusion("started"), 7)).subject
    other_zone = b.build(Event("cam", minute - 10**9, intrusion("started", "y"), 7)).subject
    crossing = b.build(Event("cam", minute + 10**9, BODY, 7)).subject  # not a situation: the rotated subject
    assert crossing != started and other_zone == started
    assert b.build(Event("cam", minute + 2 * 10**9, intrusion("ended"), 7)).subject == started  # paired
    again = b.build(Event("cam", minute + 3 * 10**9, intrusion("started"), 7)).subject  # a new situation: rotated
    assert again == crossing != started
    assert b.build(Event("cam", 2 * minute + 10**9, intrusion("ended", "y"), 7)).subject == started


def test_sequence_and_event_ids_increase():
    b = EnvelopeBuilder("dev", "00ff00ff", b"k" * 32)
    ids = [b.build(Event("cam", 0, BODY)).event_id for _ in range(3)]
    assert ids == ["dev:00ff00ff:1", "dev:00ff00ff:2", "dev:00ff00ff:3"]


def test_encode_refuses_anything_but_an_envelope():
    with pytest.raises(TypeError, match="only Envelope"):
        encode({"schema": "edge.event/1"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field, value",
    [
        ("zone_id", "x" * 65),  # long strings cannot carry data
        ("zone_id", "a b"),
        ("class_name", "A" * 10),
        ("point", (1.5, 0.2)),  # geometry is normalised
        ("image", b"\xff\xd8\xff"),  # no field can hold pixels
    ],
)
def test_bodies_reject_data_that_does_not_belong(field, value):
    fields = dict(zone_id="z", state="started", class_name="person", point=(0.1, 0.2), duration_ms=0)
    fields[field] = value
    with pytest.raises(ValidationError):
        IntrusionBody(**fields)


def test_no_envelope_field_can_hold_bytes():
    schema = json.dumps(Envelope.model_json_schema(by_alias=True))
    assert "binary" not in schema and "base64" not in schema


def test_payload_cap_is_enforced(monkeypatch):
    env = EnvelopeBuilder("dev", "00ff00ff", b"k" * 32).build(Event("cam", 0, BODY))
    monkeypatch.setattr("agent.wire.envelope.MAX_PAYLOAD_BYTES", 100)
    with pytest.raises(ValueError, match="exceeds"):
        encode(env)
