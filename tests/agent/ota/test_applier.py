"""The applier on a live device (the real owner of what is live over a real pipeline on vtest.avi, real
detectors, a real HTTP server).

Each refusal has its own error code and leaves the live model hash and zones
untouched; a model swap to light_person_detector and back keeps every frame.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper

from agent.ota.errors import ErrorCode
from agent.ota.state import KindState
from agent.settings.zones import ZonesDoc
from engines.manifest import sha256_of
from fleet.cli import main as fleet_main
from testbed.services import free_port
from tests.agent.ota.device import Device, Golden
from tests.agent.ota.docs import (
    LIGHT_JSON,
    YOLOX_JSON,
    model_manifest_doc,
    zones_doc,
    zones_manifest_doc,
)
from tests.agent.ota.http_server import ArtifactServer, Served
from tests.agent.ota.manifests import DEVICE_ID, sign_doc
from tests.support.services import tmpfs

YOLOX_SHA = json.loads(YOLOX_JSON.read_text())["sha256"]
LIGHT_SHA = json.loads(LIGHT_JSON.read_text())["sha256"]


class Ctx:
    """What a refusal case needs to build its message."""

    def __init__(self, server: ArtifactServer, bodies: dict[str, bytes], golden: Golden, key: Ed25519PrivateKey,
                 stranger: Ed25519PrivateKey, tmp_path: Path) -> None:
        self.server, self.bodies, self.golden, self.key, self.stranger = server, bodies, golden, key, stranger
        self.tmp_path = tmp_path

    def light(self, served: Served | None = None, version: int = 3, **overrides: Any) -> dict[str, Any]:
        body = self.bodies["light_person_detector.onnx"]
        url = self.server.serve("light.onnx", served or Served(body))
        return model_manifest_doc(LIGHT_JSON, url, self.golden.light, version, **overrides)

    def sign(self, doc: dict[str, Any]) -> bytes:
        return sign_doc(doc, self.key)


def _unsigned(c: Ctx) -> bytes:
    envelope = json.loads(c.sign(c.light()))
    envelope["signatures"] = []
    return json.dumps(envelope).encode()


def _bad_signature(c: Ctx) -> bytes:
    envelope = json.loads(c.sign(c.light()))
    envelope["signatures"][0]["sig"] = json.loads(c.sign(c.light(version=4)))["signatures"][0]["sig"]
    return json.dumps(envelope).encode()


def _escaping_onnx(c: Ctx) -> bytes:
    """A tiny graph whose initializer reads its weights from ../secret.bin."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    weights.data_location = TensorProto.EXTERNAL
    del weights.float_data[:]
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "4")):
        weights.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["images", "w"], ["output"])], "evil",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])], [weights],
    )
    body = onnx.helper.make_model(graph).SerializeToString()
    doc = c.light(Served(body), body=body)
    return c.sign(doc)


def _golden_fails(c: Ctx) -> bytes:
    golden = copy.deepcopy(c.golden.light)
    for frame in golden["frames"]:
        frame["boxes"] = [[x1 + 150, y1, x2 + 150, y2, k, s] for x1, y1, x2, y2, k, s in frame["boxes"]]
    body = c.bodies["light_person_detector.onnx"]
    return c.sign(model_manifest_doc(LIGHT_JSON, c.server.serve("l.onnx", Served(body)), golden, 3))


def _bad_zones(c: Ctx) -> bytes:
    bowtie = {"id": "z", "camera": "cam1", "polygon": [[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]]}
    return c.sign(zones_manifest_doc({"version": 2, "zones": [bowtie]}, 3))


def _unknown_camera_zones(c: Ctx) -> bytes:
    doc = zones_doc(2)
    doc["zones"][0]["camera"] = "cam9"
    return c.sign(zones_manifest_doc(doc, 3))


def _body(c: Ctx, name: str = "light_person_detector.onnx") -> bytes:
    return c.bodies[name]


REFUSALS: list[tuple[str, Callable[[Ctx], bytes], ErrorCode]] = [
    ("unsigned", _unsigned, ErrorCode.UNSIGNED),
    ("bad-signature", _bad_signature, ErrorCode.BAD_SIGNATURE),
    ("unknown-key", lambda c: sign_doc(c.light(), c.stranger), ErrorCode.UNKNOWN_KEY),
    ("older-version", lambda c: c.sign(c.light(version=4)), ErrorCode.OLD_VERSION),
    ("same-version", lambda c: c.sign(c.light(version=5)), ErrorCode.SAME_VERSION),
    ("expired", lambda c: c.sign(c.light(expires="2030-01-01T12:00:00Z")), ErrorCode.EXPIRED),
    ("wrong-target", lambda c: c.sign(c.light(target={"device_ids": ["box-9"]})), ErrorCode.WRONG_TARGET),
    ("hash-mismatch", lambda c: c.sign(c.light(Served(bytes(len(_body(c)))))), ErrorCode.HASH_MISMATCH),
    ("truncated", lambda c: c.sign(c.light(Served(_body(c)[:-1000]))), ErrorCode.TRUNCATED),
    ("oversized", lambda c: c.sign(c.light(Served(_body(c) + b"\0" * 4096, hide_length=True))), ErrorCode.OVERSIZED),
    ("external-data-escape", _escaping_onnx, ErrorCode.UNSAFE_EXTERNAL_DATA),
    ("golden-mismatch", _golden_fails, ErrorCode.GOLDEN_MISMATCH),
    ("zones-invalid", _bad_zones, ErrorCode.ZONES_INVALID),
    ("zones-unknown-camera", _unknown_camera_zones, ErrorCode.ZONES_INVALID),
]


@pytest.mark.parametrize(("name", "make", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusal_leaves_the_live_model_and_zones(
    name: str, make: Callable[[Ctx], bytes], code: ErrorCode, device: Callable[..., Device],
    artifact_server: ArtifactServer, model_bytes: dict[str, bytes], golden: Golden,
    fleet_key: Ed25519PrivateKey, stranger_key: Ed25519PrivateKey, tmp_path: Path,
) -> None:
    dev = device(run_detector=False)
    if name in ("older-version", "same-version"):
        dev.layout.store.save(dev.state().with_kind("model", last_version=5))
    before = dev.state()
    raw = make(Ctx(artifact_server, model_bytes, golden, fleet_key, stranger_key, tmp_path))
    status = dev.applier.apply(raw)
    assert (status.state, status.error and status.error.code) in {("refused", code), ("failed", code)}
    assert dev.live.control.live_model_sha256() == YOLOX_SHA
    assert dev.live.control.live_zones_version() == 1
    after = dev.state()
    assert after.update is None
    for kind, kind_state in after.kinds.items():
        # Only the failed version is remembered (so it is never retried); nothing serves differently.
        expected = before.of(kind)
        if status.state == "failed" and kind == status.kind:
            expected = expected.model_copy(update={"failed_version": status.version})
        assert kind_state == expected, kind


def test_a_zones_update_its_schema_refuses_is_reported_by_field_and_logged_with_the_reason(
    device: Callable[..., Device], artifact_server: ArtifactServer, model_bytes: dict[str, bytes], golden: Golden,
    fleet_key: Ed25519PrivateKey, stranger_key: Ed25519PrivateKey, tmp_path: Path, captured_logs: list[dict],
) -> None:
    dev = device(run_detector=False)
    status = dev.applier.apply(_bad_zones(Ctx(artifact_server, model_bytes, golden, fleet_key, stranger_key, tmp_path)))
    assert (status.state, status.error.code) == ("failed", "zones_invalid")
    assert status.error.message.startswith("zones.0.polygon: Value error, polygon is not simple")
    assert "pydantic" not in status.error.message and "ZonesDoc" not in status.error.message
    (failed,) = [r for r in captured_logs if r["event"] == "ota_failed"]  # not a rollback: nothing was switched
    assert failed["log_level"] == "warning" and failed["error"] == status.error.message
    assert not [r for r in captured_logs if r["event"] == "ota_rollback"]


def test_a_model_below_the_fps_floor_is_refused(device: Callable[..., Device], artifact_server: ArtifactServer,
                                                model_bytes: dict[str, bytes], golden: Golden,
                                                fleet_key: Ed25519PrivateKey) -> None:
    dev = device(run_detector=False, fps_floor=1e9)
    url = artifact_server.serve("l.onnx", Served(model_bytes["light_person_detector.onnx"]))
    status = dev.applier.apply(sign_doc(model_manifest_doc(LIGHT_JSON, url, golden.light, 3), fleet_key))
    assert (status.state, status.error.code) == ("failed", "too_slow")
    assert dev.live.control.live_model_sha256() == YOLOX_SHA


def test_model_swap_and_back_while_frames_flow(device: Callable[..., Device], artifact_server: ArtifactServer,
                                               model_bytes: dict[str, bytes], golden: Golden,
                                               fleet_key: Ed25519PrivateKey) -> None:
    dev = device(health_window_s=2.0, health_min_frames=3)
    light = artifact_server.serve("light.onnx", Served(model_bytes["light_person_detector.onnx"]))
    yolox = artifact_server.serve("yolox.onnx", Served(model_bytes["yolox_nano.onnx"]))
    to_light = dev.applier.apply(sign_doc(model_manifest_doc(LIGHT_JSON, light, golden.light, 3), fleet_key))
    assert (to_light.state, to_light.model_sha256) == ("committed", LIGHT_SHA), to_light
    back = dev.applier.apply(sign_doc(model_manifest_doc(YOLOX_JSON, yolox, golden.yolox, 4), fleet_key))
    assert (back.state, back.model_sha256) == ("committed", YOLOX_SHA), back
    assert dev.states() == ["download", "verify", "stage", "validate", "switch", "watch", "committed"] * 2

    state = dev.state()
    assert state.of("model") == KindState(active="b", active_version=4, last_version=4)
    frames = list(dev.live.processed)
    seqs = np.array([f.seq for f in frames])
    assert (np.diff(seqs) == 1).all(), "a frame was lost or repeated across the switches"
    shas = [f.model_sha256 for f in frames]
    runs = [shas[0]] + [b for a, b in zip(shas, shas[1:]) if a != b]
    assert runs == [YOLOX_SHA, LIGHT_SHA, YOLOX_SHA]
    for sha in (LIGHT_SHA, YOLOX_SHA):
        assert sum(f.detections for f in frames if f.model_sha256 == sha) > 0, "detections stopped after a switch"
    assert dev.live.status_publications >= 4  # retained status re-published at each switch and commit


def test_zones_update_applies_live_then_a_bad_live_model_rolls_back(
    device: Callable[..., Device], artifact_server: ArtifactServer, model_bytes: dict[str, bytes], golden: Golden,
    fleet_key: Ed25519PrivateKey,
) -> None:
    dev = device(run_detector=False, bad_sha256=LIGHT_SHA)
    zones = dev.applier.apply(sign_doc(zones_manifest_doc(zones_doc(7), 3), fleet_key))
    assert (zones.state, zones.zones_version) == ("committed", 7)
    frames_before = len(dev.live.processed)
    url = artifact_server.serve("l.onnx", Served(model_bytes["light_person_detector.onnx"]))
    status = dev.applier.apply(sign_doc(model_manifest_doc(LIGHT_JSON, url, golden.light, 3), fleet_key))
    assert (status.state, status.error.code, status.model_sha256) == ("rolled_back", "unhealthy", YOLOX_SHA)
    assert dev.states()[-3:] == ["watch", "rollback", "rolled_back"]
    assert dev.state().of("model") == KindState(active=None, active_version=0, last_version=0, failed_version=3)
    assert len(dev.live.processed) > frames_before  # the camera never stopped
    # The same manifest again is refused quietly: a failed version is never retried.
    again = dev.applier.apply(sign_doc(model_manifest_doc(LIGHT_JSON, url, golden.light, 3), fleet_key))
    assert (again.state, again.error.code) == ("refused", "same_version")
    assert dev.reports[-1].state == "rolled_back"


def test_frames_must_flow_during_the_health_window(device: Callable[..., Device], fleet_key: Ed25519PrivateKey) -> None:
    dev = device(run_detector=False, health_min_frames=10_000)
    status = dev.applier.apply(sign_doc(zones_manifest_doc(zones_doc(7), 3), fleet_key))
    assert (status.state, status.error.code, status.zones_version) == ("rolled_back", "unhealthy", 1)
    assert "not streaming" not in status.error.message
    assert status.error.message.endswith("version 3 is not tried again: sign a higher one")


def test_an_update_rolled_back_for_want_of_frames_names_the_cameras_not_streaming(
    device: Callable[..., Device], fleet_key: Ed25519PrivateKey
) -> None:
    dev = device(run_detector=False, camera=f"rtsp://127.0.0.1:{free_port()}/cam")  # nothing listens there
    status = dev.applier.apply(sign_doc(zones_manifest_doc(zones_doc(7), 3), fleet_key))
    assert (status.state, status.error.code, status.zones_version) == ("rolled_back", "unhealthy", 1)
    assert "0 frames in the 0.4 s window, need 2; cameras not streaming: cam1 (" in status.error.message  # offline or connecting


def test_a_rollback_returns_to_the_technicians_save_and_the_file_keeps_matching(
    device: Callable[..., Device], fleet_key: Ed25519PrivateKey
) -> None:
    """Issue 12, 3: an editor save is a commit; a zones update that fails its window goes back to it."""
    dev = device(run_detector=False, health_min_frames=10_000)
    control = dev.live.control
    saved = zones_doc(2)
    saved["zones"][0]["polygon"] = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]
    assert control.save_edited_zones(ZonesDoc.model_validate(saved)) == 2
    status = dev.applier.apply(sign_doc(zones_manifest_doc(zones_doc(7), 3), fleet_key))
    assert (status.state, status.error.code, status.zones_version) == ("rolled_back", "unhealthy", 2)
    assert control.zones == ZonesDoc.model_validate(saved)
    assert yaml.safe_load(dev.live.config.zones_file.read_text()) == control.zones.model_dump(mode="json")
    changes = [(actor, d) for actor, action, d in dev.live.audited if action == "zones_change"]
    assert changes == [("technician", {"old_version": 1, "new_version": 2}), ("ota", {"old_version": 2, "new_version": 7}),
                       ("ota", {"old_version": 7, "new_version": 2})]  # fmt: skip


def test_a_committed_zones_update_is_written_to_the_zones_file(
    device: Callable[..., Device], fleet_key: Ed25519PrivateKey
) -> None:
    dev = device(run_detector=False, health_window_s=0.2, health_min_frames=1)
    status = dev.applier.apply(sign_doc(zones_manifest_doc(zones_doc(7), 3), fleet_key))
    assert (status.state, status.zones_version) == ("committed", 7)
    on_disk = ZonesDoc.model_validate(yaml.safe_load(dev.live.config.zones_file.read_text()))
    assert on_disk == dev.live.control.zones == ZonesDoc.model_validate(zones_doc(7))


def test_a_disk_that_fills_during_the_download_fails_the_update_says_so_and_it_may_come_again(
    device: Callable[..., Device], artifact_server: ArtifactServer, model_bytes: dict[str, bytes], golden: Golden,
    fleet_key: Ed25519PrivateKey, tmp_path: Path,
) -> None:
    # the state folder on a real 8 MiB disk with 1 MiB left: room for the update's record, not for its 3.6 MB model
    with tmpfs(tmp_path / "state", "8m") as disk:
        dev = device()
        hog = disk / "hog"
        hog.write_bytes(bytes(shutil.disk_usage(disk).free - 1024 * 1024))
        url = artifact_server.serve("l.onnx", Served(model_bytes["light_person_detector.onnx"]))
        raw = sign_doc(model_manifest_doc(LIGHT_JSON, url, golden.light, 3), fleet_key)
        status = dev.applier.apply(raw)
        assert (status.state, status.error and status.error.code) == ("failed", "storage_failed"), status
        assert f"the disk of {disk / 'ota'} is full: free space" in status.error.message
        assert status.error.message.endswith("publish it again")
        assert dev.live.control.live_model_sha256() == YOLOX_SHA
        state = dev.state()  # recorded: nothing in progress, and not a version used up
        assert state.update is None and state.of("model").failed_version == 0
        assert shutil.disk_usage(disk).free > 900 * 1024  # what was downloaded of it is gone
        hog.unlink()  # space again: the same update applies
        assert dev.applier.apply(raw).state == "committed"
        assert dev.live.control.live_model_sha256() == LIGHT_SHA


def model_manifest(model_json: Path, models_dir: Path, url: str, golden_dir: Path, out: Path) -> int:
    """`edge-fleet ota model-manifest`, version 3 for the test device, valid 10 years (its clock reads 2030)."""
    return fleet_main(["ota", "model-manifest", str(model_json), "--models-dir", str(models_dir), "--url", url,
                       "--golden-dir", str(golden_dir), "--version", "3", "--device", DEVICE_ID, "--out", str(out),
                       "--valid-days", "3650"])  # fmt: skip


def test_a_model_update_made_by_the_fleet_tool_from_the_golden_frames_commits(
    device: Callable[..., Device], artifact_server: ArtifactServer, model_bytes: dict[str, bytes], golden: Golden,
    fleet_key: Ed25519PrivateKey, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # the operator's path: `edge-fleet ota model-manifest` (the golden reference computed here), `sign`, and a
    # device holding the same golden frames applies it
    url = artifact_server.serve("light.onnx", Served(model_bytes["light_person_detector.onnx"]))
    out = tmp_path / "model.yaml"
    code = model_manifest(LIGHT_JSON, models_dir, url, golden.folder, out)
    assert code == 0, capsys.readouterr().err
    document = yaml.safe_load(out.read_text())
    assert document["payload"]["golden"] == golden.light  # what the devices' own check expects
    dev = device(run_detector=False)
    status = dev.applier.apply(sign_doc(document, fleet_key))
    assert status.state == "committed", status
    assert dev.live.control.live_model_sha256() == LIGHT_SHA


def test_the_fleet_tool_refuses_a_golden_folder_without_frames(models_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "golden").mkdir()
    code = model_manifest(LIGHT_JSON, models_dir, "https://example.net/m.onnx", tmp_path / "golden", tmp_path / "m.yaml")
    assert code == 2 and not (tmp_path / "m.yaml").exists()
    assert "no golden frames (*.png)" in capsys.readouterr().err
    code = model_manifest(LIGHT_JSON, models_dir, "https://example.net/m.onnx", tmp_path / "nowhere", tmp_path / "m.yaml")
    assert code == 2 and f"{tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err


def test_a_model_with_its_weights_beside_it_goes_out_with_them(
    device: Callable[..., Device], artifact_server: ArtifactServer, golden: Golden, fleet_key: Ed25519PrivateKey,
    models_dir: Path, tmp_path: Path,
) -> None:
    # the light detector saved as a graph and a file of weights beside it, as large ONNX models are
    folder = tmp_path / "models"
    folder.mkdir()
    onnx.save_model(onnx.load(str(models_dir / "light_person_detector.onnx")), str(folder / "light_ext.onnx"),
                    save_as_external_data=True, all_tensors_to_one_file=True, location="light_ext.weights", size_threshold=0)
    graph = folder / "light_ext.onnx"
    manifest = json.loads(LIGHT_JSON.read_text()) | {"file": graph.name, "sha256": sha256_of(graph),
                                                     "size_bytes": graph.stat().st_size}
    (folder / "light_ext.json").write_text(json.dumps(manifest))
    url = artifact_server.serve("light_ext.onnx", Served((folder / "light_ext.onnx").read_bytes()))
    artifact_server.serve("light_ext.weights", Served((folder / "light_ext.weights").read_bytes()))
    out = tmp_path / "model.yaml"
    assert model_manifest(folder / "light_ext.json", folder, url, golden.folder, out) == 0
    document = yaml.safe_load(out.read_text())
    assert [a["name"] for a in document["payload"]["artifacts"]] == ["light_ext.onnx", "light_ext.weights"]
    assert document["payload"]["artifacts"][1]["url"] == url.rsplit("/", 1)[0] + "/light_ext.weights"
    dev = device(run_detector=False)
    status = dev.applier.apply(sign_doc(document, fleet_key))
    assert status.state == "committed", status
