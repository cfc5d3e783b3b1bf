"""Fleet tools: keygen writes keys safely, sign makes what devices accept, the CLI maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from agent.ota import Manifest, OtaError, SignedManifest, TrustStore, verify
from agent.ota.canonical import canonical_json_bytes
from fleet.cli import EXIT_BAD_INPUT, EXIT_IO_ERROR, EXIT_OK, add_fleet_parser
from fleet.publish import FleetError, keygen, sign
from tests.agent.ota.manifests import (
    AGENT_VERSION,
    DEVICE_ID,
    GROUPS,
    NOW,
    manifest_doc,
)


def _verify_as_device(raw: bytes, trust: TrustStore) -> Manifest:
    return verify(
        raw, trust, device_id=DEVICE_ID, groups=GROUPS, agent_version=AGENT_VERSION, now=NOW, last_versions={}
    )


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    key = keygen(tmp_path / "keys")
    assert stat.S_IMODE(key.private_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert key.public_key_path.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert TrustStore.from_file(key.trust_entry_path).key_ids == {key.key_id}


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    first, second = keygen(tmp_path), keygen(tmp_path)
    assert first.key_id != second.key_id
    assert len(list(tmp_path.iterdir())) == 6


def test_signed_yaml_manifest_is_accepted_by_a_device_trusting_the_key(tmp_path: Path) -> None:
    key = keygen(tmp_path / "keys")
    source = tmp_path / "zones.yaml"
    # YAML turns timestamps into datetimes: sign must serialise them back the way devices parse them.
    source.write_text(
        yaml.safe_dump({**manifest_doc("zones"), "issued_at": NOW.replace(day=1), "expires": NOW.replace(month=2)})
    )
    raw = sign(source, key.private_key_path)
    manifest = _verify_as_device(raw, TrustStore.from_file(key.trust_entry_path))
    assert (manifest.kind, manifest.version) == ("zones", 3)
    assert SignedManifest.model_validate_json(raw).signatures[0].key_id == key.key_id


def test_sign_writes_defaults_explicitly(tmp_path: Path) -> None:
    key = keygen(tmp_path)
    doc = manifest_doc()
    del doc["payload"]["golden"]["iou_min"]
    signed = json.loads(SignedManifest.model_validate_json(sign(doc, key.private_key_path)).manifest)
    assert signed["payload"]["golden"]["iou_min"] == 0.5


def test_sign_refuses_an_invalid_manifest(tmp_path: Path) -> None:
    key = keygen(tmp_path)
    with pytest.raises(FleetError, match="version"):
        sign(manifest_doc(version=0), key.private_key_path)


@pytest.mark.parametrize(
    ("kind", "payload", "said"),
    [
        ("zones", {"zones": [{"id": "z", "camera": "cam1", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]], "intrusion": {}}]},
         "invalid zones document: zones.0.polygon: Value error, polygon is not simple"),
        ("zones", {"zones": [{"id": "z", "camera": "cam1", "polygon": [[0, 0], [1, 0], [1, 1]], "intrusoin": {}}]},
         "invalid zones document: zones.0.intrusoin: Extra inputs are not permitted"),
        ("config", {"bogus_key": 1}, "config patch: bogus_key: not a config key"),
        ("config", {"broker": {"port": 1884}}, "config patch: 'broker' cannot change while running"),
        ("config", {"model": {"confidence": 2}}, "config patch: model.confidence: Input should be less than 1"),
        ("config", {"tracker": {"high_score": "high"}}, "config patch: tracker.high_score: Input should be a valid number"),
    ],
    ids=["bow-tie polygon", "misspelled rule", "unknown key", "restart-only key", "out of bounds", "wrong type"],
)
def test_sign_refuses_a_payload_every_device_would_refuse(
    kind: str, payload: dict, said: str, tmp_path: Path, cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    key = keygen(tmp_path / "keys")
    doc = manifest_doc(kind)
    doc["payload"][{"zones": "zones", "config": "patch"}[kind]] = payload
    (tmp_path / "update.json").write_text(json.dumps(doc))
    out = tmp_path / "update.signed"
    assert cli("sign", str(tmp_path / "update.json"), "--key", str(key.private_key_path), "--out", str(out)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert said in err and err.rstrip().endswith("every device would refuse it"), err
    assert not out.exists()


def test_sign_refuses_a_manifest_already_expired(tmp_path: Path) -> None:
    key = keygen(tmp_path)
    with pytest.raises(FleetError, match="the manifest expired at 2020-02-01T00:00:00.*every device would refuse it"):
        sign(manifest_doc("zones", issued_at="2020-01-01T00:00:00Z", expires="2020-02-01T00:00:00Z"), key.private_key_path)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--canary", "other-box"], "not other-box: those devices would ignore it"),
        (["--device", DEVICE_ID, "--device", "other-box"], "not other-box: those devices would ignore it"),
        (["--device", DEVICE_ID, "--ca-file", "ca.crt"], "TLS needs --ca-file, --cert-file and --key-file together; "
         "--cert-file, --key-file missing"),
    ],
    ids=["canary outside the target", "device outside the target", "TLS half given"],
)
def test_publish_refuses_what_could_not_work_before_touching_the_broker(
    argv: list[str], said: str, tmp_path: Path, cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    key = keygen(tmp_path / "keys")
    (tmp_path / "signed").write_bytes(sign(manifest_doc("zones"), key.private_key_path))  # for DEVICE_ID only
    # port 1: nothing listens there, so a publish that got as far as the broker would fail another way
    assert cli("publish", str(tmp_path / "signed"), "--site", "s", "--port", "1", *argv) == EXIT_BAD_INPUT
    assert said in capsys.readouterr().err


def test_publish_refuses_a_signed_file_cut_short_before_touching_the_broker(
    tmp_path: Path, cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    key = keygen(tmp_path / "keys")
    (tmp_path / "signed").write_bytes(sign(manifest_doc("zones"), key.private_key_path)[:100])
    # port 1: nothing listens there, so a publish that got as far as the broker would fail another way
    assert cli("publish", str(tmp_path / "signed"), "--site", "s", "--device", DEVICE_ID, "--port", "1") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{tmp_path / 'signed'}: not a signed manifest (" in err and "sign the manifest again" in err, err


def _tampered(envelope: bytes) -> bytes:
    """The envelope with its manifest's version raised after signing (still canonical JSON, still parses)."""
    doc = json.loads(envelope)
    manifest = json.loads(doc["manifest"])
    manifest["version"] += 1
    doc["manifest"] = canonical_json_bytes(manifest).decode()
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("signed_with", "edit", "said"),
    [
        ("fleet", _tampered, "bad_signature: no valid signature by trusted keys"),
        ("other", lambda raw: raw, "unknown_key: signed only by keys not in the trust file"),
    ],
    ids=["edited after signing", "signed with a key the devices do not trust"],
)
def test_publish_with_the_trust_file_refuses_what_devices_would_refuse_before_touching_the_broker(
    signed_with: str, edit: Callable[[bytes], bytes], said: str, tmp_path: Path, cli: Callable[..., int],
    capsys: pytest.CaptureFixture[str]
) -> None:
    keys = {name: keygen(tmp_path / name) for name in ("fleet", "other")}
    signed = edit(sign(manifest_doc("zones"), keys[signed_with].private_key_path))
    (tmp_path / "signed").write_bytes(signed)
    trust = str(keys["fleet"].trust_entry_path)
    # port 1: nothing listens there, so a publish that got as far as the broker would fail another way
    argv = ["publish", str(tmp_path / "signed"), "--site", "s", "--device", DEVICE_ID, "--port", "1", "--trust", trust]
    assert cli(*argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert said in err and f"every device with the trust file {trust} would refuse it" in err, err
    with pytest.raises(OtaError, match=said.split(":")[0]):  # as the devices do
        _verify_as_device(signed, TrustStore.from_file(keys["fleet"].trust_entry_path))


def test_publish_checks_a_good_signature_then_goes_to_the_broker(
    tmp_path: Path, cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    key = keygen(tmp_path / "keys")
    (tmp_path / "signed").write_bytes(sign(manifest_doc("zones"), key.private_key_path))
    argv = ["publish", str(tmp_path / "signed"), "--site", "s", "--device", DEVICE_ID, "--port", "1"]
    assert cli(*argv, "--trust", str(key.trust_entry_path)) == EXIT_IO_ERROR  # past the check: no broker on port 1
    assert cli(*argv, "--trust", str(tmp_path / "missing.json")) == EXIT_BAD_INPUT
    assert "cannot check the signature: " in capsys.readouterr().err


def test_sign_refuses_a_non_ed25519_key(tmp_path: Path) -> None:
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(rsa.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(FleetError, match="not Ed25519"):
        sign(manifest_doc(), path)
    with pytest.raises(FleetError, match="cannot load"):
        sign(manifest_doc(), tmp_path / "missing.pem")


def test_sign_refuses_what_devices_would_refuse_as_too_big(tmp_path: Path) -> None:
    key = keygen(tmp_path)
    doc = manifest_doc(target={"device_ids": [f"box-{i:05d}-{'x' * 50}" for i in range(1000)]})
    doc["payload"]["calibration_report"] = {"notes": "y" * 15000}
    doc["payload"]["golden"]["frames"] = [
        {"frame": f"f{i}.png", "boxes": [[1.5, 2.5, 30.25, 40.125, 0, 0.5]] * 300} for i in range(32)
    ]
    with pytest.raises(FleetError, match="devices refuse"):
        sign(doc, key.private_key_path)


@pytest.fixture()
def cli() -> Callable[..., int]:
    """Run `edge-fleet ota ...` through a parser wired the way `edge-fleet` wires it."""
    parser = argparse.ArgumentParser(prog="edge-fleet")
    add_fleet_parser(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        args = parser.parse_args(["ota", *argv])
        return args.func(args)

    return run


def test_cli_keygen_then_sign(tmp_path: Path, cli: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("keygen", str(tmp_path / "keys")) == EXIT_OK
    key_id = capsys.readouterr().out.split()[1]
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(manifest_doc("config")))
    out = tmp_path / "m.signed.json"
    key_path = tmp_path / "keys" / f"fleet-{key_id}.pem"
    assert cli("sign", str(manifest), "--key", str(key_path), "--out", str(out)) == EXIT_OK
    assert "signed config version 3" in capsys.readouterr().out
    assert _verify_as_device(out.read_bytes(), TrustStore.from_file(key_path.with_suffix(".trust.json"))).version == 3


def test_cli_bad_manifest_exits_2(tmp_path: Path, cli: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    key = keygen(tmp_path)
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: [unclosed")
    out = tmp_path / "out.json"
    assert cli("sign", str(manifest), "--key", str(key.private_key_path), "--out", str(out)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{manifest}: manifest not valid YAML: line 1, column " in err and "<unicode string>" not in err, err
    assert not out.exists()
