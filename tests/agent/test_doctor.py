"""`edge-agent doctor` against real things: the shipped mosquitto config with
per-device certificates, a GStreamer RTSP camera, a clip, the real model.

Healthy: every line passes except `clock` where this machine's kernel says
the clock is not synchronised (a container whose host runs no NTP): the
test asks the kernel itself and expects exactly that line, so it also
passes on a box that is synchronised. Broken: a dead camera, a broker
certificate from another CA, a device certificate from another CA, an open
broker, a world-readable key and a full disk each fail their own lines, with
a hint, and exit code 1.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from agent.settings.config import load_config
from agent.tools.checks import format_table
from agent.tools.doctor import (
    CheckResult,
    add_doctor_parser,
    check_zones_file,
    kernel_clock_synchronised,
    run_checks,
)
from fleet.pki import DeviceGrant, init_ca, issue
from tests.conftest import REPO
from tests.support.services import tmpfs
from tests.support.tls_broker import TlsBroker, tls_broker

DEVICE, SITE = "box-1", "site-1"
MEASURE_S = 1.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TlsBroker]:
    with tls_broker(tmp_path / "broker", devices={DEVICE: DeviceGrant(SITE)}) as running:
        yield running


def write_config(tmp_path: Path, models_dir: Path, cameras: list[dict], broker: dict, **extra) -> Path:
    state_dir = tmp_path / "state"
    state_dir.mkdir(exist_ok=True)
    raw = {
        "device_id": DEVICE,
        "site": SITE,
        "models_dir": str(models_dir),
        "state_dir": str(state_dir),
        "model": {"manifest": str(REPO / "models" / "light_person_detector.json")},
        "cameras": cameras,
        "broker": broker,
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def tls_settings(broker: TlsBroker, ca: Path | None = None, identity: tuple[Path, Path] | None = None) -> dict:
    cert, key = identity or broker.identity(DEVICE)
    tls = {"ca_file": str(ca or broker.ca_cert), "cert_file": str(cert), "key_file": str(key)}
    return {"host": "127.0.0.1", "port": broker.port, "tls": tls}


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def doctor_cli(config: Path, *flags: str) -> Callable[[], int]:
    parser = argparse.ArgumentParser()
    add_doctor_parser(parser.add_subparsers())
    args = parser.parse_args(["doctor", "--config", str(config), "--camera-seconds", str(MEASURE_S), *flags])
    return lambda: args.func(args)


@pytest.fixture(scope="module")
def clock_ok() -> bool:
    """What this machine's kernel says; in a container without NTP on the host: False."""
    return bool(kernel_clock_synchronised())


def test_healthy_box_passes_every_line_it_can(
    tmp_path: Path, broker: TlsBroker, rtsp_server, media_dir: Path, models_dir: Path, clock_ok: bool, capsys
) -> None:
    camera = rtsp_server(media_dir / "vtest.avi", "door")
    # a codec the camera does not send: FFmpeg here decodes it all the same, and the line says it for a Jetson
    cameras = [{"id": "door", "url": camera.url, "codec": "h265"}, {"id": "clip", "url": str(media_dir / "vtest.avi")}]
    config = write_config(tmp_path, models_dir, cameras, tls_settings(broker))

    results = by_name(run_checks(config, MEASURE_S))

    expected = {"config", "model", "inference", "camera:door", "camera:clip", "broker.connect",
                "broker.publish_own", "broker.publish_other", "clock", "disk", "state_dir", "zones_file", "key_file"}  # fmt: skip
    assert set(results) == expected
    failing = {name for name, r in results.items() if not r.ok}
    assert failing == (set() if clock_ok else {"clock"}), format_table(list(results.values()))
    assert results["inference"].detail.startswith("CPU, ONNX Runtime")
    assert "768x576" in results["camera:door"].detail
    assert "the camera sends h264 but its codec: says h265 (set codec: h264 for a Jetson)" in results["camera:door"].detail
    assert "delivered back" in results["broker.publish_own"].detail
    assert "Not authorized (0x87)" in results["broker.publish_other"].detail
    assert clock_ok or results["clock"].hint

    capsys.readouterr()  # only the CLI's own output below
    assert doctor_cli(config, "--json")() == (0 if clock_ok else 1)
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is clock_ok
    assert [c["name"] for c in report["checks"]][:3] == ["config", "model", "inference"]


def test_broken_box_fails_the_right_lines_with_hints(
    tmp_path: Path, broker: TlsBroker, rtsp_server, media_dir: Path, models_dir: Path, capsys
) -> None:
    camera = rtsp_server(media_dir / "vtest.avi", "door")
    camera.stop()  # the camera is dead
    init_ca(tmp_path / "rogue-ca", "another CA")  # the config trusts the wrong CA
    cameras = [{"id": "door", "url": camera.url, "open_timeout_s": 3}]
    config = write_config(tmp_path, models_dir, cameras, tls_settings(broker, ca=tmp_path / "rogue-ca" / "ca.crt"))
    broker.identity(DEVICE)[1].chmod(0o644)

    results = by_name(run_checks(config, MEASURE_S))

    failing = {name for name, r in results.items() if not r.ok} - {"clock"}
    assert failing == {"camera:door", "broker.connect", "broker.publish_own", "broker.publish_other", "key_file"}
    assert all(results[name].hint for name in failing)
    assert "ca_file" in results["broker.connect"].hint and "not trusted" in results["broker.connect"].detail
    assert "not checked" in results["broker.publish_own"].detail
    assert "chmod 600" in results["key_file"].hint

    capsys.readouterr()
    assert doctor_cli(config)() == 1
    table = capsys.readouterr().out
    assert "FAIL  camera:door" in table
    assert f"{camera.url}: cannot open source: nothing listens at 127.0.0.1:{camera.port} (connection refused)" in table
    assert "fix: correct what it says" in table


def test_device_certificate_from_another_ca_is_refused_by_the_broker(
    tmp_path: Path, broker: TlsBroker, media_dir: Path, models_dir: Path
) -> None:
    init_ca(tmp_path / "rogue-ca", "another CA")
    rogue = issue(tmp_path / "rogue-ca", DEVICE, tmp_path / "rogue")
    cameras = [{"id": "clip", "url": str(media_dir / "vtest.avi")}]
    config = write_config(tmp_path, models_dir, cameras, tls_settings(broker, identity=rogue))

    results = by_name(run_checks(config, MEASURE_S))

    assert not results["broker.connect"].ok
    assert "refused this device's certificate" in results["broker.connect"].hint
    assert "not checked" in results["broker.publish_own"].detail
    assert results["camera:clip"].ok and results["model"].ok


def test_open_broker_is_caught_letting_this_box_write_for_another(
    tmp_path: Path, mosquitto, media_dir: Path, models_dir: Path
) -> None:
    """The anonymous test broker has no ACL: the forged publish is delivered, and the doctor says so."""
    cameras = [{"id": "clip", "url": str(media_dir / "vtest.avi")}]
    config = write_config(tmp_path, models_dir, cameras, {"host": mosquitto.host, "port": mosquitto.port})

    results = by_name(run_checks(config, MEASURE_S))

    assert results["broker.connect"].ok and "loopback" in results["broker.connect"].detail
    assert results["broker.publish_own"].ok
    other = results["broker.publish_other"]
    assert not other.ok and "delivered" in other.detail and "acl_file" in other.hint


@pytest.fixture
def tiny_full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB disk, filled up."""
    with tmpfs(tmp_path / "state", "1m") as mount_point:
        with open(mount_point / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        yield mount_point


def test_full_disk_fails_disk_and_state_dir(
    tiny_full_disk: Path, tmp_path: Path, mosquitto, media_dir: Path, models_dir: Path
) -> None:
    cameras = [{"id": "clip", "url": str(media_dir / "vtest.avi")}]
    config = write_config(tmp_path, models_dir, cameras, {"host": mosquitto.host, "port": mosquitto.port})

    results = by_name(run_checks(config, MEASURE_S))

    assert not results["disk"].ok and "outbox.max_bytes" in results["disk"].hint
    assert "0.0 MiB free" in results["disk"].detail
    assert not results["state_dir"].ok and "No space left" in results["state_dir"].detail


def test_bad_config_is_one_failing_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("device_id: [not, an, id]\n")
    assert doctor_cli(path, "--json")() == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and [c["name"] for c in report["checks"]] == ["config"]
    assert "check-config" in report["checks"][0]["hint"]


def test_a_camera_input_size_the_model_cannot_run_fails_the_inference_line(
    tmp_path: Path, models_dir: Path, media_dir: Path
) -> None:
    """NanoDet-m's graph reshapes to its own grid: a camera asking 320x320 of it fails `inference`, naming the setting,
    before the agent would fail at start."""
    from agent.settings.config import load_config
    from agent.tools.doctor import check_inference

    cameras = [{"id": "clip", "url": str(media_dir / "vtest.avi"), "detect": {"input_size_wh": [320, 320]}}]
    path = write_config(tmp_path, models_dir, cameras, {"host": "127.0.0.1", "port": 1883})
    raw = yaml.safe_load(path.read_text())
    raw["model"] = {"manifest": str(REPO / "models" / "nanodet_m_416.json")}
    path.write_text(yaml.safe_dump(raw))
    config, _ = load_config(path)
    result = check_inference(config)
    assert not result.ok
    assert "cannot run at input size (320, 320)" in result.detail and "detect.input_size_wh" in result.hint


def test_a_zones_file_the_agent_cannot_rewrite_is_named(tmp_path: Path, media_dir: Path, models_dir: Path) -> None:
    # the zone editor on, its zones file on a read-only file system (as /etc is to the installed service)
    cameras = [{"id": "clip", "url": str(media_dir / "vtest.avi")}]
    with tmpfs(tmp_path / "etc", "1m", read_only={"zones.yaml": "version: 1\nzones: []\n"}) as etc:
        config_path = write_config(tmp_path, models_dir, cameras, {"host": "127.0.0.1", "port": 1},
                                   zones_file=str(etc / "zones.yaml"), zone_editor={"enabled": True})  # fmt: skip
        config, _ = load_config(config_path)
        result = check_zones_file(config)
        assert not result.ok and f"cannot write in {etc}" in result.detail and "Read-only file system" in result.detail
        assert str(tmp_path / "state" / "zones.yaml") in result.hint
    (tmp_path / "zones.yaml").write_text("version: 1\nzones: []\n")  # a folder it may write
    config, _ = load_config(write_config(tmp_path, models_dir, cameras, {"host": "127.0.0.1", "port": 1},
                                         zones_file=str(tmp_path / "zones.yaml"), zone_editor={"enabled": True}))
    assert check_zones_file(config).ok
