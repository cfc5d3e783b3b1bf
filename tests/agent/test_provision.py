"""`edge-agent provision` for scripted flashing: a real RTSP camera, a clip, the real model,
a CA made here. The key and CSR must be usable by the CA, the config must load, and a
second run must not replace anything without --force."""

from __future__ import annotations

import argparse
import os
import pwd
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from agent.settings.config import ConfigError, load_config
from agent.tools.provision import add_provision_parser, ask_missing, provision
from fleet import pki
from tests.conftest import REPO

MANIFEST = REPO / "models" / "light_person_detector.json"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_provision_parser(parser.add_subparsers())
    return parser.parse_args(["provision", *argv])


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    pki.init_ca(tmp_path / "ca", "test device CA")
    return tmp_path / "ca"


def flags(tmp_path: Path, ca_dir: Path, models_dir: Path, *cameras: str) -> list[str]:
    argv = ["--non-interactive", "--config", str(tmp_path / "etc" / "config.yaml"), "--device-id", "box-7",
            "--site", "lyon-02", "--group", "lobby", "--broker-host", "broker.example", "--ca-file",
            str(ca_dir / "ca.crt"), "--manifest", str(MANIFEST), "--models-dir", str(models_dir),
            "--state-dir", str(tmp_path / "state"), "--probe-seconds", "0.5"]  # fmt: skip
    for camera in cameras:
        argv += ["--camera", camera]
    return argv


def test_non_interactive_provision_probes_cameras_and_writes_a_loadable_config(
    tmp_path: Path, ca_dir: Path, rtsp_server, media_dir: Path, models_dir: Path
) -> None:
    door = rtsp_server(media_dir / "vtest.avi", "door")
    argv = flags(tmp_path, ca_dir, models_dir, f"door={door.url}", f"clip={media_dir / 'vtest.avi'}",
                 "dead=rtsp://user:hunter2@127.0.0.1:9/none")  # fmt: skip
    args = parse(*argv)
    assert args.func(args) == 0

    etc = tmp_path / "etc"
    key_path, csr_path = etc / "pki" / "box-7.key", etc / "pki" / "box-7.csr"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((etc / "config.yaml").stat().st_mode) == 0o640
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "box-7"
    assert csr.public_key() == key.public_key()

    text = (etc / "config.yaml").read_text()
    assert "# probe" in text and "door" in text
    # the RTSP camera's codec as the probe found it (a Jetson's decoder is built for it); none for a file
    assert [c.get("codec") for c in yaml.safe_load(text)["cameras"]] == ["h264", None, None]
    probes = [line for line in text.splitlines() if "# probe" in line]
    assert "reachable, 768x576" in probes[0] and "codec h264" in probes[0]
    assert "reachable, 768x576" in probes[1]
    assert "NOT REACHABLE" in probes[2] and "hunter2" not in probes[2]

    # Until the CA answers, the config is complete but names a certificate that is not there yet.
    with pytest.raises(ConfigError, match="cert_file"):
        load_config(etc / "config.yaml")
    (etc / "pki" / "box-7.crt").write_bytes(pki.sign_csr(ca_dir, csr_path.read_bytes()))
    config, zones = load_config(etc / "config.yaml")
    assert (config.device_id, config.site, config.groups) == ("box-7", "lyon-02", ["lobby"])
    assert [c.id for c in config.cameras] == ["door", "clip", "dead"]
    assert config.broker.port == 8883 and config.broker.tls.key_file == key_path
    assert zones.version == 1 and not zones.zones


def test_with_the_ca_at_hand_the_certificate_is_signed_on_the_spot(
    tmp_path: Path, ca_dir: Path, media_dir: Path, models_dir: Path
) -> None:
    args = parse(*flags(tmp_path, ca_dir, models_dir, f"clip={media_dir / 'vtest.avi'}"), "--ca-dir", str(ca_dir))
    assert args.func(args) == 0
    config, _ = load_config(tmp_path / "etc" / "config.yaml")
    cert = x509.load_pem_x509_certificate(config.broker.tls.cert_file.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "box-7"


def test_refuses_to_overwrite_identity_or_config_without_force(
    tmp_path: Path, ca_dir: Path, media_dir: Path, models_dir: Path, capsys
) -> None:
    argv = flags(tmp_path, ca_dir, models_dir, f"clip={media_dir / 'vtest.avi'}")
    args = parse(*argv)
    assert args.func(args) == 0
    key_path = tmp_path / "etc" / "pki" / "box-7.key"
    first_key = key_path.read_bytes()

    again = parse(*argv)
    assert again.func(again) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert key_path.read_bytes() == first_key

    forced = parse(*argv, "--force")
    assert forced.func(forced) == 0
    assert key_path.read_bytes() != first_key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--camera", "web=http://cam/x"], "unsupported URL scheme"),
        (["--camera", "no-equals-sign"], "expected ID=URL"),
        (["--site", "two words"], "site"),
        (["--models-dir", "/nonexistent"], "fetch it first"),
        (["--device-id", "box/7"], "device id"),
    ],
)
def test_bad_input_writes_nothing(
    tmp_path: Path, ca_dir: Path, media_dir: Path, models_dir: Path, capsys, monkeypatch, change: list[str], message: str
) -> None:
    monkeypatch.delenv("EDGE_AGENT_MODELS_DIR", raising=False)  # the flags name the models dir
    args = parse(*flags(tmp_path, ca_dir, models_dir, f"clip={media_dir / 'vtest.avi'}"), *change)
    assert args.func(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "etc").exists()


def test_questions_fill_what_the_flags_left_out(
    tmp_path: Path, ca_dir: Path, media_dir: Path, models_dir: Path
) -> None:
    args = parse("--config", str(tmp_path / "etc" / "config.yaml"), "--models-dir", str(models_dir),
                 "--state-dir", str(tmp_path / "state"), "--site", "lyon-02")  # fmt: skip
    answers = iter(["box-9", "", "lobby, dock", "broker.example", "", str(ca_dir / "ca.crt"), str(MANIFEST),
                    f"clip={media_dir / 'vtest.avi'}", ""])  # fmt: skip
    asked: list[str] = []
    ask_missing(args, lambda prompt: asked.append(prompt) or next(answers))
    assert "site [lyon-02]: " in asked and "broker port [8883]: " in asked
    provision(args, out=lambda _line: None)
    raw = (tmp_path / "etc" / "config.yaml").read_text()
    assert "device_id: box-9" in raw and "- lobby" in raw and "- dock" in raw


def test_run_as_root_it_hands_the_service_what_it_must_read(
    tmp_path: Path, ca_dir: Path, media_dir: Path, models_dir: Path, capsys
) -> None:
    # a technician provisions with sudo: the service's user must read the config (its group) and own its key (mode
    # 0600, which doctor requires) and the zones file it rewrites; root-owned 0640 files it could not read at all
    if os.geteuid() != 0:
        pytest.skip("handing files over needs root (CI runs as root)")
    service = pwd.getpwnam("nobody")  # stands in for deploy/install.sh's edge-agent, which this machine lacks
    args = parse(*flags(tmp_path, ca_dir, models_dir, f"clip={media_dir / 'vtest.avi'}"), "--owner", "nobody")
    assert args.func(args) == 0, capsys.readouterr().err
    key, zones = tmp_path / "etc" / "pki" / "box-7.key", tmp_path / "state" / "zones.yaml"
    config, csr = tmp_path / "etc" / "config.yaml", tmp_path / "etc" / "pki" / "box-7.csr"
    owners = {p: (p.stat().st_uid, p.stat().st_gid, p.stat().st_mode & 0o777) for p in (key, zones, config, csr)}
    assert owners == {key: (service.pw_uid, service.pw_gid, 0o600), zones: (service.pw_uid, service.pw_gid, 0o640),
                      config: (0, service.pw_gid, 0o640), csr: (0, service.pw_gid, 0o644)}  # fmt: skip
    folders = {p: (p.stat().st_uid, p.stat().st_gid, p.stat().st_mode & 0o777) for p in (key.parent, zones.parent)}
    assert folders == {key.parent: (0, service.pw_gid, 0o750), zones.parent: (service.pw_uid, service.pw_gid, 0o750)}
    refused = parse(*flags(tmp_path / "b", ca_dir, models_dir, f"clip={media_dir / 'vtest.avi'}"), "--owner", "no-such-user")
    assert refused.func(refused) == 2
    assert "--owner no-such-user: no such user" in capsys.readouterr().err and not (tmp_path / "b").exists()
