"""The retained status: `online` while the agent runs, and the broker's last will
`offline` when the agent dies without a word (SIGKILL)."""

from __future__ import annotations

from agent.wire.status import Status
from tests.support.delivery import SyntheticAgent


def statuses(messages) -> list[Status]:
    return [Status.model_validate_json(m.payload) for m in messages]


def test_a_killed_agent_is_announced_offline_by_its_last_will(tmp_path, mosquitto, subscriber):
    sub = subscriber(mosquitto, "edge/v1/site-1/synth-1/status")
    agent = SyntheticAgent(tmp_path / "agent", mosquitto.port, rate_hz=10)
    agent.start()
    sub.wait_for(lambda ms: any(s.state == "online" for s in statuses(ms)), timeout_s=15)
    agent.kill()
    # the socket closes with the process: the broker publishes the will at once
    got = sub.wait_for(lambda ms: statuses(ms)[-1].state == "offline", timeout_s=15)
    online, offline = statuses(got)[0], statuses(got)[-1]
    assert offline.boot_id == online.boot_id  # the will names the boot that died
    late = subscriber(mosquitto, "edge/v1/site-1/synth-1/status")  # and it is retained
    assert statuses(late.wait_for(lambda ms: len(ms) >= 1, timeout_s=5))[-1].state == "offline"
