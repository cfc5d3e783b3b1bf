"""The README documents every event kind: each of its body's fields, and an example that validates."""

import json
import re
from pathlib import Path

from agent.wire.envelope import BODIES, EVENT_KINDS, Envelope

DOC = Path(__file__).resolve().parents[3] / "README.md"


def test_every_kind_has_a_valid_example():
    blocks = re.findall(r"```json\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.S)
    kinds = [Envelope.model_validate(json.loads(b)).kind for b in blocks]
    assert set(kinds) == set(EVENT_KINDS)  # every example validated above; every kind has one


def test_every_kind_lists_each_field_of_its_body_in_order():
    text = DOC.read_text(encoding="utf-8")
    for body in BODIES:
        kind = body.model_fields["kind"].default
        section = re.search(rf"#### `{kind}`\n(.*?)```json", text, re.S)
        assert section, f"README has no section for {kind}"
        # "- `a`: ..." or "- `a`, `b`: ...": the names before the colon, in order
        bullets = re.findall(r"^- ([^:\n]*)", section.group(1), re.M)
        listed = [name for bullet in bullets for name in re.findall(r"`(\w+)(?:\[\])?`", bullet)]
        assert listed == [f for f in body.model_fields if f != "kind"], kind
