"""A power cut on storage that lied about its writes: the agent finds its outbox and its audit log
damaged at start. It sets both aside (kept for recovery, never appended to), says so in its log and
its new audit chain, and goes on sending what it sees: a box never stops on what it could not keep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.io.audit import DAMAGED_ACTION
from testbed.agent_process import AgentProcess, plaza_config

pytestmark = pytest.mark.integration

WAIT_S = 90


def test_a_damaged_outbox_and_audit_log_are_set_aside_and_the_agent_runs_on(
    tmp_path, mosquitto, subscriber, models_dir, media_dir
):
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x07" * 8000)  # a header, then garbage
    (state / "outbox.sqlite-wal").write_bytes(b"\x01" * 4096)  # the damaged file's WAL, not the new one's
    (state / "audit.jsonl").write_bytes(b'{"seq": 0, "actor": "agent", "action": "st')  # cut mid-record
    sub = subscriber(mosquitto, "edge/v1/site-1/box-1/#")
    agent = AgentProcess(plaza_config(tmp_path, models_dir, mosquitto.port, media_dir))
    try:
        sub.wait_for(lambda ms: any("/events/" in m.topic for m in ms), timeout_s=WAIT_S)
        assert agent.stop() == 0, agent.log_tail()
    finally:
        agent.kill()
    records = [json.loads(line) for line in agent.log_path.read_text().splitlines()]
    errors = {r["event"]: r for r in records if r.get("level") == "error"}  # (the last line: the run's totals)
    assert set(errors) == {"outbox_damaged", "audit_log_damaged"}, errors
    outbox_aside = Path(errors["outbox_damaged"]["moved_to"])
    assert outbox_aside.parent == state and outbox_aside.name.startswith("outbox.sqlite.damaged-") and outbox_aside.read_bytes()[16:24] == b"\x07" * 8
    wal = state / "outbox.sqlite-wal"
    assert not wal.exists() or b"\x01" * 4096 not in wal.read_bytes()  # the new outbox never took the old WAL
    assert "not a database" in errors["outbox_damaged"]["problem"] and ".recover" in errors["outbox_damaged"]["hint"]
    audit_aside = Path(errors["audit_log_damaged"]["moved_to"])
    assert audit_aside.parent == state and audit_aside.name.startswith("audit.jsonl.damaged-") and audit_aside.read_bytes().endswith(b'"action": "st')
    # the new chain says what was set aside, first the log, then the outbox
    chain = [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]
    actions = [r["action"] for r in chain]
    assert actions[0] == DAMAGED_ACTION and chain[0]["details"]["moved_to"] == audit_aside.name
    assert actions.index("outbox_damaged") < actions.index("start")
    assert chain[actions.index("outbox_damaged")]["details"]["moved_to"] == outbox_aside.name
