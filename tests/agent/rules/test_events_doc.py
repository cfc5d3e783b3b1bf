"""The README documents every event kind with an example that validates."""

import json
import re
from pathlib import Path

from agent.wire.envelope import EVENT_KINDS, Envelope

DOC = Path(__file__).resolve().parents[3] / "README.md"


def test_every_kind_has_a_valid_example():
    blocks = re.findall(r"```json\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.S)
    kinds = [Envelope.model_validate(json.loads(b)).kind for b in blocks]
    assert set(kinds) == set(EVENT_KINDS)  # every example validated above; every kind has one
