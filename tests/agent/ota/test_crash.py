"""SIGKILL at every step of an update, then restart: the device serves the old or the new model, never a mix,
and finishes or rolls back the update by itself.

The applier runs in a child process (`crash_child`) that blocks at the chosen point (a step hook) so the
kill lands exactly there.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.ota.slots import SlotLayout
from agent.ota.state import PRE_SWITCH_STEPS
from agent.settings.trust import raw_public_bytes
from tests.agent.ota.device import Golden
from tests.agent.ota.docs import LIGHT_JSON, REPO, YOLOX_JSON, model_manifest_doc
from tests.agent.ota.http_server import ArtifactServer, Served
from tests.agent.ota.manifests import sign_doc

YOLOX_SHA = json.loads(YOLOX_JSON.read_text())["sha256"]
LIGHT_SHA = json.loads(LIGHT_JSON.read_text())["sha256"]
CHILD_TIMEOUT_S = 120.0
KILL_POINTS = [
    "download", "download.done", "verify", "stage", "validate", "validate.done",
    "switch", "switch.done", "watch", "watch.done",
]


@pytest.fixture
def child(tmp_path: Path, golden: Golden, models_dir: Path, media_dir: Path,
          fleet_key: Ed25519PrivateKey) -> Callable[..., tuple[list[str], subprocess.Popen]]:
    """child(message=b"", kill_at="", bad_sha256="") -> (stdout lines, process); with kill_at, SIGKILLed there."""
    trusted = base64.b64encode(raw_public_bytes(fleet_key.public_key())).decode()

    def run(message: bytes = b"", kill_at: str = "", bad_sha256: str = "") -> tuple[list[str], subprocess.Popen]:
        cmd = [sys.executable, "-m", "tests.agent.ota.crash_child", "--root", str(tmp_path / "ota"),
               "--golden", str(golden.folder), "--models", str(models_dir), "--clip", str(media_dir / "vtest.avi"),
               "--trusted", trusted, "--kill-at", kill_at, "--bad-sha256", bad_sha256]
        if message:
            (tmp_path / "message.json").write_bytes(message)
            cmd += ["--message", str(tmp_path / "message.json")]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("AT "):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(CHILD_TIMEOUT_S)
        proc.stdout.close()
        return lines, proc

    return run


def _json_line(lines: list[str], key: str) -> dict:
    found = [json.loads(line) for line in lines if line.startswith("{")]
    return next((d for d in found if key in d), {"missing": key, "lines": lines})


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_each_step_then_restart_finishes_the_update(
    point: str, child: Callable, artifact_server: ArtifactServer, model_bytes: dict[str, bytes],
    golden: Golden, fleet_key: Ed25519PrivateKey, tmp_path: Path,
) -> None:
    url = artifact_server.serve("light.onnx", Served(model_bytes["light_person_detector.onnx"]))
    message = sign_doc(model_manifest_doc(LIGHT_JSON, url, golden.light, 3), fleet_key)
    lines, proc = child(message, kill_at=point)
    assert proc.returncode == -signal.SIGKILL and lines[-1] == f"AT {point}", lines
    interrupted = SlotLayout(tmp_path / "ota").store.load()
    assert interrupted.update is not None and interrupted.update.step == point.split(".")[0]

    lines, proc = child()
    assert proc.returncode == 0, lines
    # At start, before resuming: exactly the version the state says is active (the new one only once the
    # switch was persisted), opened from its own verified files.
    new_live = interrupted.served_slot("model") == "a"
    assert new_live == (interrupted.update.step not in PRE_SWITCH_STEPS | {"switch"})
    assert _json_line(lines, "serving").get("serving") == (LIGHT_SHA if new_live else YOLOX_SHA), lines
    final = _json_line(lines, "final")
    assert final["final"] == LIGHT_SHA and final["states"][-1] == "committed", final
    state = SlotLayout(tmp_path / "ota").store.load()
    assert state.update is None
    assert (state.of("model").active, state.of("model").last_version) == ("a", 3)


def test_sigkill_during_rollback_then_restart_finishes_the_rollback(
    child: Callable, artifact_server: ArtifactServer, model_bytes: dict[str, bytes], golden: Golden,
    fleet_key: Ed25519PrivateKey, tmp_path: Path,
) -> None:
    url = artifact_server.serve("light.onnx", Served(model_bytes["light_person_detector.onnx"]))
    message = sign_doc(model_manifest_doc(LIGHT_JSON, url, golden.light, 3), fleet_key)
    lines, proc = child(message, kill_at="rollback", bad_sha256=LIGHT_SHA)
    assert lines[-1] == "AT rollback", lines
    lines, proc = child(bad_sha256=LIGHT_SHA)
    assert _json_line(lines, "serving")["serving"] == YOLOX_SHA  # a start mid-rollback serves the old model
    assert _json_line(lines, "final") == {"final": YOLOX_SHA, "states": ["rollback", "rolled_back"]}
    state = SlotLayout(tmp_path / "ota").store.load()
    assert state.update is None and state.of("model").active is None and state.of("model").failed_version == 3


def test_an_update_that_keeps_killing_the_agent_is_rolled_back(
    child: Callable, artifact_server: ArtifactServer, model_bytes: dict[str, bytes], golden: Golden,
    fleet_key: Ed25519PrivateKey, tmp_path: Path,
) -> None:
    url = artifact_server.serve("light.onnx", Served(model_bytes["light_person_detector.onnx"]))
    child(sign_doc(model_manifest_doc(LIGHT_JSON, url, golden.light, 3), fleet_key), kill_at="watch")
    for _ in range(3):  # the new model is live at every start, and every start dies in its health window
        lines, _proc = child(kill_at="watch")
        assert _json_line(lines, "serving")["serving"] == LIGHT_SHA
    lines, proc = child()
    assert _json_line(lines, "final")["final"] == YOLOX_SHA
    assert _json_line(lines, "final")["states"] == ["rollback", "rolled_back"]


def test_an_update_whose_staged_files_are_gone_starts_again_from_its_download(
    child: Callable, artifact_server: ArtifactServer, model_bytes: dict[str, bytes], golden: Golden,
    fleet_key: Ed25519PrivateKey, tmp_path: Path,
) -> None:
    # a failure before the switch that cleared the slot but could not record itself (a full disk) leaves the
    # state at its step; the next start must not run that step on files that are gone
    url = artifact_server.serve("light.onnx", Served(model_bytes["light_person_detector.onnx"]))
    lines, _proc = child(sign_doc(model_manifest_doc(LIGHT_JSON, url, golden.light, 3), fleet_key), kill_at="validate")
    layout = SlotLayout(tmp_path / "ota")
    update = layout.store.load().update
    assert update is not None and update.step == "validate", lines
    layout.clear("model", update.slot)
    lines, proc = child()
    assert proc.returncode == 0, lines
    final = _json_line(lines, "final")
    assert final["final"] == LIGHT_SHA and final["states"][0] == "download" and final["states"][-1] == "committed", final
