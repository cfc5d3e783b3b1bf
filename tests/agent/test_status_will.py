"""The retained status: `online` while the agent runs, and the broker's last will
`offline` when the agent dies without a word (SIGKILL); what it says of the zones in force."""

from __future__ import annotations

from agent.runtime.app import Agent
from agent.settings.config import load_config
from agent.wire.status import Status
from testbed.agent_process import base_config, looping_plaza, whole_frame_zones, write_config
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


def test_the_status_names_the_zones_in_force_by_their_content(tmp_path, models_dir, media_dir):
    # a technician edits the zones file by hand and keeps its version: the version cannot tell, the digest does
    def status(folder: str, x: float):
        zones = whole_frame_zones("plaza", intrusion={"dwell_s": 0.2})
        zones["zones"][0]["polygon"][1][0] = x
        config, doc = load_config(write_config(tmp_path / folder, base_config(models_dir, 1883, looping_plaza(media_dir)), zones))
        return Agent(config, doc).status()

    first, same, edited = status("a", 1.0), status("b", 1.0), status("c", 0.9)
    assert first.zones_version == same.zones_version == edited.zones_version == 1
    assert first.zones_sha256 == same.zones_sha256 != edited.zones_sha256
