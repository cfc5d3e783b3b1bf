"""A crashed agent is never left `online` (issue 12, item 2), and its log stays one JSON
record per line with the traceback inside its record (item 6).

The crash is real: while the agent runs, another process drops the outbox table from
under it (a damaged database is the kind of fault the agent cannot go on through). The
analytics thread's next write fails, the error ends `run`, and the process exits with
the code that says how the broker learnt of it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest

from agent.tools.cli import EXIT_CRASH_ANNOUNCED, EXIT_CRASH_WILL
from agent.wire.status import Status
from testbed.agent_process import AgentProcess, plaza_config

pytestmark = pytest.mark.integration

def statuses(messages) -> list[Status]:
    return [Status.model_validate_json(m.payload) for m in messages if m.topic.endswith("/status")]


def test_an_agent_that_crashes_is_announced_offline_with_the_reason_and_its_exit_code(
    tmp_path, mosquitto, subscriber, models_dir, media_dir
):
    sub = subscriber(mosquitto, "edge/v1/site-1/box-1/#")
    config = plaza_config(tmp_path, models_dir, mosquitto.port, media_dir)
    agent = AgentProcess(config)
    try:
        sub.wait_for(lambda ms: any("/events/" in m.topic for m in ms), timeout_s=90)
        online = [s for s in statuses(sub.messages) if s.state == "online"][-1]
        with sqlite3.connect(tmp_path / "state" / "outbox.sqlite", timeout=10) as db:
            db.execute("DROP TABLE outbox")  # the fault: the durable outbox is gone
        rc = agent.wait(timeout_s=60)
    finally:
        agent.kill()
    assert rc == EXIT_CRASH_ANNOUNCED, agent.log_tail()
    final = statuses(sub.messages)[-1]
    assert (final.state, final.reason, final.boot_id) == ("offline", "crashed", online.boot_id)
    assert online.cameras == {"plaza": "online"} and final.cameras == {"plaza": "stopped"}
    late = subscriber(mosquitto, "edge/v1/site-1/box-1/status")  # retained for whoever looks later
    assert statuses(late.wait_for(lambda ms: len(ms) >= 1, timeout_s=5))[-1].reason == "crashed"

    # The log: every line one JSON record, however many threads wrote at once; the traceback
    # of the crash is a field of its record, not raw lines between records.
    lines = agent.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) and "event" in r for r in records)
    crashed = [r for r in records if r["event"] == "agent_crashed"]
    assert len(crashed) == 1 and crashed[0]["announced"] is True
    assert "Traceback" in crashed[0]["exception"] and "no such table: outbox" in crashed[0]["exception"]


def test_a_crash_the_broker_cannot_hear_at_once_leaves_it_the_last_will(
    tmp_path, mosquitto, subscriber, models_dir, media_dir
):
    """The broker is frozen (SIGSTOP) when the agent crashes: `offline`/`crashed` cannot be
    acknowledged, so the agent disconnects asking for its will and says so by its exit code;
    the broker, once it runs again, publishes the will."""
    sub = subscriber(mosquitto, "edge/v1/site-1/box-1/status")
    agent = AgentProcess(plaza_config(tmp_path, models_dir, mosquitto.port, media_dir))
    try:
        online = sub.wait_for(lambda ms: any(s.state == "online" for s in statuses(ms)), timeout_s=90)
        os.kill(mosquitto.pid, signal.SIGSTOP)
        try:
            with sqlite3.connect(tmp_path / "state" / "outbox.sqlite", timeout=10) as db:
                db.execute("DROP TABLE outbox")
            rc = agent.wait(timeout_s=60)
        finally:
            os.kill(mosquitto.pid, signal.SIGCONT)
    finally:
        agent.kill()
    assert rc == EXIT_CRASH_WILL, agent.log_tail()
    got = sub.wait_for(lambda ms: statuses(ms)[-1].reason == "lost", timeout_s=30)
    assert statuses(got)[-1].boot_id == statuses(online)[-1].boot_id
    assert statuses(got)[-1].cameras == {"plaza": "stopped"}  # the will too: a box that is gone reads no camera


def test_an_agent_that_dies_without_a_word_is_announced_by_its_last_will(
    tmp_path, mosquitto, subscriber, models_dir, media_dir
):
    sub = subscriber(mosquitto, "edge/v1/site-1/box-1/status")
    agent = AgentProcess(plaza_config(tmp_path, models_dir, mosquitto.port, media_dir, {"version": 1}))
    try:
        sub.wait_for(lambda ms: any(s.state == "online" for s in statuses(ms)), timeout_s=90)
        time.sleep(1)
    finally:
        agent.kill()  # SIGKILL: no word at all
    got = sub.wait_for(lambda ms: statuses(ms)[-1].state == "offline", timeout_s=15)
    assert statuses(got)[-1].reason == "lost"
