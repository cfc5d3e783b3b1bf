"""The zone editor and OTA racing for the zones of a real agent process (real Mosquitto, the real
editor over HTTP with this boot's token, a signed zones update published as the fleet does).

One source of truth (issue 12, item 3): a technician's save is a commit; an OTA zones update that
fails its health window rolls back to the last committed document, whoever committed it; while
the update is under way the editor is refused (never half-applied); and the zones file on disk,
what the editor reads as live, the retained status and the events delivered all agree.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.io.zone_editor import TOKEN_HEADER, ZONE_EDITOR_TOKEN_FILE
from agent.ota.report import OtaStatus
from fleet.publish import keygen
from testbed.agent_process import AgentProcess, base_config, write_config
from testbed.services import Mosquitto, free_port, wait_for_port
from tests.agent.ota.docs import zones_manifest_doc
from tests.integration.test_ota_agent import (
    ROOT,
    Fleet,
    _events,
    _retained_status,
    _statuses,
    strips,
)

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 60.0
OUTCOME_TIMEOUT_S = 60.0
SAVE_EVERY_S = 0.05


class Editor:
    """The zone editor's HTTP API, as its page uses it."""

    def __init__(self, port: int, token: str) -> None:
        self.url, self.token = f"http://127.0.0.1:{port}/api/zones", token

    def current(self) -> dict[str, Any]:
        request = urllib.request.Request(self.url, headers={TOKEN_HEADER: self.token})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def save(self, base_version: int, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"base_version": base_version, "doc": {"zones": doc["zones"], "lines": []}}).encode()
        headers = {TOKEN_HEADER: self.token, "Content-Type": "application/json"}
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def _wait_for_token(state_dir: Path, agent: AgentProcess) -> str:
    path = state_dir / ZONE_EDITOR_TOKEN_FILE
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        assert time.monotonic() < deadline, agent.log_tail()
        time.sleep(0.1)
    return json.loads(path.read_text())["token"]


def _agree(editor: Editor, folder: Path, broker: Mosquitto, version: int, doc: dict[str, Any]) -> None:
    """What the editor reads as live, the zones file and the retained status all say `doc` at `version`."""
    live = editor.current()
    assert live["version"] == version and [z["id"] for z in live["zones"]] == [z["id"] for z in doc["zones"]], live
    on_disk = yaml.safe_load((folder / "zones.yaml").read_text())
    assert on_disk["version"] == version and on_disk["zones"] == live["zones"]
    assert _retained_status(broker).zones_version == version


def test_the_editor_and_ota_race_for_the_zones_and_a_rollback_returns_to_the_technicians_save(
    tmp_path: Path, mosquitto: Mosquitto, subscriber, models_dir: Path, media_dir: Path
) -> None:
    key = keygen(tmp_path / "keys")
    (tmp_path / "golden").mkdir()
    port = free_port()
    cameras = [{"id": "plaza", "url": str(media_dir / "vtest.avi"), "replay": "realtime", "loop": True}]
    config = base_config(models_dir, mosquitto.port, cameras)
    config["ota"] = {"trust_file": str(key.trust_entry_path), "golden_dir": str(tmp_path / "golden"),
                     "health_window_s": 3.0, "health_min_frames": 100_000}  # every update fails its window
    config["zone_editor"] = {"enabled": True, "port": port}  # fmt: skip
    folder = tmp_path / "agent"
    everything = subscriber(mosquitto, f"{ROOT}/#")
    agent = AgentProcess(write_config(folder, config, strips(1, "strip")))
    fleet = Fleet(key, None, {}, mosquitto)  # type: ignore[arg-type] - zones carry no artifact, no golden
    saves: list[tuple[float, int, dict[str, Any], dict[str, Any]]] = []  # (time, status, response, doc)
    try:
        wait_for_port("127.0.0.1", port, START_TIMEOUT_S, agent.proc)
        editor = Editor(port, _wait_for_token(folder / "state", agent))
        everything.wait_for(lambda ms: bool(_events(ms)), START_TIMEOUT_S)

        # The technician redraws the zones: a commit.
        status, answer = editor.save(1, strips(2, "tech"))
        assert (status, answer) == (200, {"version": 2}), answer

        # The fleet pushes zones while the technician keeps saving.
        done = threading.Event()

        def technician() -> None:
            k = 0
            while not done.is_set():
                k += 1
                base = editor.current()["version"]
                doc = strips(0, f"t{k}x")
                status, answer = editor.save(base, doc)
                saves.append((time.time(), status, answer, doc))
                time.sleep(SAVE_EVERY_S)

        racing = threading.Thread(target=technician, name="technician")
        racing.start()
        try:
            fleet.post(zones_manifest_doc(strips(7, "lane"), version=1), "zones")
            outcome = everything.wait_for(
                lambda ms: any(s.state in ("rolled_back", "committed", "failed") for s in _statuses(ms, "ota/status", OtaStatus)),
                OUTCOME_TIMEOUT_S,
            )
        finally:
            done.set()
            racing.join(30)
        (final,) = [s for s in _statuses(outcome, "ota/status", OtaStatus) if s.state in ("rolled_back", "committed", "failed")]
        assert (final.state, final.error.code if final.error else None) == ("rolled_back", "unhealthy"), final

        # The last accepted save (before the update, or after its rollback) is live, on disk and in the status.
        accepted = [(answer["version"], doc) for _, status, answer, doc in saves if status == 200]
        refused = [answer["error"] for _, status, answer, _ in saves if status != 200]
        assert any("being applied" in e for e in refused), refused  # the race did happen
        assert all("being applied" in e or "zones changed since" in e for e in refused), refused
        assert final.zones_version in {2} | {v for v, _ in accepted}  # rolled back to a technician's commit
        _agree(editor, folder, mosquitto, *(accepted[-1] if accepted else (2, strips(2, "tech"))))

        # The box is the technician's again.
        status, answer = editor.save(editor.current()["version"], strips(0, "after"))
        assert status == 200, answer
        _agree(editor, folder, mosquitto, answer["version"], strips(0, "after"))
        settled_ms = int(time.time() * 1000) + 1000  # events of the moment before, still on their way, aside
        delivered = everything.wait_for(
            lambda ms: any(e.ts > settled_ms and getattr(e.body, "zone_id", "") for e in _events(ms)), 30
        )
        later = {e.body.zone_id for e in _events(delivered) if e.ts > settled_ms and getattr(e.body, "zone_id", "")}
        assert later and all(z.startswith("after") for z in later), later
    finally:
        code = agent.stop()
    assert code == 0, agent.log_tail()
    audit = [json.loads(line) for line in (folder / "state" / "audit.jsonl").read_text().splitlines()]
    changes = [(r["actor"], r["details"]["new_version"]) for r in audit if r["action"] == "zones_change"]
    # the OTA switch to v7 and its rollback to the commit before it, between technician commits
    ota = [i for i, (actor, _) in enumerate(changes) if actor == "ota"]
    assert [changes[i][1] for i in ota] == [7, final.zones_version], changes
    print(f"technician saves during the update: {len(saves)}, accepted {len(accepted)}; rolled back to v{final.zones_version}")
