"""Health counts what went wrong: failed detect batches, events the broker refused, and update
messages refused, on the real agent (in-process, real model, real Mosquitto whose ACL refuses
the event topics, junk published on the OTA topic), as the `.../health` message carries them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.core.types import Detections
from agent.runtime.app import Agent
from agent.settings.config import load_config
from agent.wire.status import Health
from fleet.publish import connect, keygen
from testbed.agent_process import base_config, write_config
from testbed.services import Mosquitto, Subscriber
from tests.integration.test_ota_agent import strips

pytestmark = pytest.mark.integration

ROOT = "edge/v1/site-1/box-1"
# anonymous clients (the agent, the test) may read everything and write all but the events
ACL = f"topic read #\ntopic write {ROOT}/status\ntopic write {ROOT}/health\ntopic write {ROOT}/ota/#\n"
JUNK = [b"", b"{not json", b'{"payload": "x", "signatures": []}']
TIMEOUT_S = 60.0


class BrokenEngine:
    """A detector whose every batch fails, as a broken engine does (swapped in at a frame boundary)."""

    last_timings_s: dict[str, float] = {}

    def detect(self, images: list, sizes_wh: list | None = None) -> list[Detections]:
        raise RuntimeError("a broken engine")

    def close(self) -> None:
        pass


def test_health_reports_failed_detect_batches_rejected_events_and_refused_updates(
    tmp_path: Path, models_dir: Path, media_dir: Path
) -> None:
    (tmp_path / "acl").write_text(ACL)
    broker = Mosquitto(tmp_path / "mosquitto", extra_conf=f"acl_file {tmp_path / 'acl'}\n")
    broker.start()
    key = keygen(tmp_path / "keys")
    (tmp_path / "golden").mkdir()
    cameras = [{"id": "plaza", "url": str(media_dir / "vtest.avi"), "replay": "realtime", "loop": True}]
    raw = base_config(models_dir, broker.port, cameras)
    raw["ota"] = {"trust_file": str(key.trust_entry_path), "golden_dir": str(tmp_path / "golden")}
    raw["health"] = {"interval_s": 1.0}
    agent = Agent(*load_config(write_config(tmp_path / "agent", raw, strips(1, "strip"))))
    health = Subscriber(broker.host, broker.port, f"{ROOT}/health")
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), name="agent", daemon=True)
    runner.start()

    def latest(ms: list) -> Health | None:
        return Health.model_validate_json(ms[-1].payload) if ms else None

    try:
        # events are produced and refused by the broker
        health.wait_for(lambda ms: (h := latest(ms)) is not None and h.mqtt_rejected > 0, TIMEOUT_S)
        first = latest(health.messages)
        assert first is not None and first.detect_errors == 0 and first.ota_refused == 0
        # junk on the update topic: each one refused
        client = connect(broker.host, broker.port)
        try:
            for payload in JUNK:
                client.publish(f"{ROOT}/ota/model", payload, qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()
        # a broken engine from the next frame boundary on
        assert agent.control is not None
        agent.control.pipeline.swap(detector=BrokenEngine()).wait(TIMEOUT_S)
        health.wait_for(
            lambda ms: (h := latest(ms)) is not None and h.detect_errors >= 3 and h.ota_refused == len(JUNK), TIMEOUT_S
        )
    finally:
        stop.set()
        runner.join(60)
        health.close()
        broker.stop()
    final = latest(health.messages)
    assert final is not None and final.mqtt_rejected >= first.mqtt_rejected and final.ota_refused == len(JUNK)
    assert agent.final["delivered"] == 0  # no event got through the ACL
