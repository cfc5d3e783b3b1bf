"""`fleet publish` and `fleet status` against real Mosquitto and two live devices running the real applier.

Two lightweight devices (tests/support/live_agent.py + the real applier and worker, each on its own MQTT
client) keep this test fast; the real agent is exercised in tests/integration/test_ota_agent.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.ota.control import Baseline, ModelRef
from agent.ota.report import DeviceIdentity, OtaStatus
from agent.ota.slots import SlotLayout
from agent.ota.worker import OtaWorker
from agent.settings.trust import TrustStore
from agent.settings.zones import ZonesDoc
from fleet.cli import EXIT_OK, EXIT_ROLLOUT_FAILED, add_fleet_parser
from fleet.publish import RolloutWatch, connect, keygen, ota_topic, sign
from testbed.services import Mosquitto, Subscriber
from tests.agent.ota.device import make_applier
from tests.agent.ota.docs import YOLOX_JSON, zones_doc, zones_manifest_doc
from tests.support.live_agent import LiveAgent

SITE = "site"
GROUP = "site-paris"


class _DeviceLink:
    """One device: live agent + applier + worker, subscribed to its own and its group's ota topics."""

    def __init__(self, broker: Mosquitto, device_id: str, root: Path, trust: TrustStore, clip: Path,
                 models_dir: Path) -> None:
        zones = ZonesDoc.model_validate(zones_doc(1))
        baseline = Baseline(ModelRef(YOLOX_JSON, models_dir), zones, {})
        self.live = LiveAgent(clip, baseline, SlotLayout(root), run_detector=False).__enter__()
        self.status_topic = f"edge/v1/{SITE}/{device_id}/ota/status"
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=device_id)
        identity = DeviceIdentity(device_id, (GROUP,), "1.2.0")
        applier = make_applier(self.live.control, root, trust, baseline, root, self._report, identity=identity,
                               health_window_s=0.3, health_min_frames=1)
        self.worker = OtaWorker(applier).__enter__()
        topics = [(f"edge/v1/{SITE}/{device_id}/ota/+", 1), (f"edge/v1/{SITE}/groups/{GROUP}/ota/+", 1)]
        self.client.on_connect = lambda client, *_: client.subscribe(topics)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.endswith("/ota/status"):  # our own status matches ota/+ too
            self.worker.submit(msg.payload)

    def _report(self, status: OtaStatus) -> None:
        self.client.publish(self.status_topic, status.to_bytes(), qos=1, retain=True)

    def close(self) -> None:
        self.worker.__exit__(None, None, None)
        self.client.disconnect()
        self.client.loop_stop()
        self.live.__exit__(None, None, None)


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Mosquitto, media_dir: Path, models_dir: Path) -> Iterator[tuple]:
    key = keygen(tmp_path / "keys")
    trust = TrustStore.from_file(key.trust_entry_path)
    devices = {d: _DeviceLink(mosquitto, d, tmp_path / d, trust, media_dir / "vtest.avi", models_dir)
               for d in ("box-0001", "box-0002")}
    yield key, devices
    for device in devices.values():
        device.close()


@pytest.fixture
def cli() -> Callable[..., int]:
    parser = argparse.ArgumentParser(prog="edge-fleet")
    add_fleet_parser(parser.add_subparsers(dest="command", required=True))
    return lambda *argv: (args := parser.parse_args(["ota", *argv])).func(args)


def _broker_args(broker: Mosquitto) -> list[str]:
    return ["--site", SITE, "--host", broker.host, "--port", str(broker.port), "--timeout-s", "60"]


def test_canary_first_then_the_group(fleet: tuple, mosquitto: Mosquitto, cli: Callable[..., int], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    key, devices = fleet
    signed = tmp_path / "zones.signed.json"
    signed.write_bytes(sign(zones_manifest_doc(zones_doc(7), 3, target={"groups": [GROUP]}), key.private_key_path))
    code = cli("publish", str(signed), *_broker_args(mosquitto), "--canary", "box-0001", "--group", GROUP)
    out, progress = capsys.readouterr()
    assert code == EXIT_OK, out
    assert "box-0001" in out and "committed" in out
    # the progress bar (stderr, not a terminal: plain lines): the canary's commit, then the group
    bars = [line for line in progress.splitlines() if line.startswith("rollout")]
    assert bars[0].endswith("] 1/2") and bars[-1].endswith("[" + "#" * 30 + "] 2/2")
    code = cli("status", *_broker_args(mosquitto), "--kind", "zones", "--version", "3",
               "--device", "box-0001", "--device", "box-0002")
    table = capsys.readouterr().out
    assert code == EXIT_OK, table
    rows = [line.split()[:2] for line in table.splitlines() if line.startswith("box-")]  # logs share stdout
    assert rows == [["box-0001", "committed"], ["box-0002", "committed"]]
    assert all(d.live.control.live_zones_version() == 7 for d in devices.values())


def test_a_failing_canary_stops_the_rollout(fleet: tuple, mosquitto: Mosquitto, cli: Callable[..., int],
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, devices = fleet
    bad = zones_doc(8)
    bad["zones"][0]["camera"] = "cam9"
    signed = tmp_path / "bad.signed.json"
    signed.write_bytes(sign(zones_manifest_doc(bad, 4, target={"groups": [GROUP]}), key.private_key_path))
    groups = Subscriber(mosquitto.host, mosquitto.port, ota_topic(SITE, "zones", group=GROUP))
    code = cli("publish", str(signed), *_broker_args(mosquitto), "--canary", "box-0001", "--group", GROUP)
    captured = capsys.readouterr()
    assert code == EXIT_ROLLOUT_FAILED
    assert "failed" in captured.out and "zones_invalid" in captured.out
    groups.close()
    assert groups.messages == []  # the group never got it
    assert devices["box-0002"].live.control.live_zones_version() == 1
    assert devices["box-0002"].worker.resumed.is_set()


def test_the_watch_subscribes_again_after_the_broker_restarts(mosquitto: Mosquitto) -> None:
    # a broker restarted during a rollout: the canary's retained `committed` comes after it; the watch must read it
    client = connect(mosquitto.host, mosquitto.port)
    try:
        watch = RolloutWatch(client, SITE, "zones", 3)
        mosquitto.kill()
        mosquitto.start()
        status = OtaStatus(device_id="box-0001", ts=1, state="committed", kind="zones", version=3,
                           model_sha256="0" * 64, zones_version=3)
        device = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        device.connect(mosquitto.host, mosquitto.port)
        device.loop_start()
        device.publish(f"edge/v1/{SITE}/box-0001/ota/status", status.to_bytes(), qos=1, retain=True).wait_for_publish(10)
        device.disconnect()
        device.loop_stop()
        outcomes = watch.wait(["box-0001"], timeout_s=30)
    finally:
        client.disconnect()
        client.loop_stop()
    assert outcomes["box-0001"].state == "committed"
