"""Draw a zone in the editor (real Chromium) and see the running agent use it.

The agent runs in-process on the sample clip with no zones; the editor's
callbacks are wired the way agent/app.py can take them today
(`Agent.swap_zones`, `Agent.audit`). Agent has no accessor for the latest
frame yet, so the page draws on a blank canvas here (the frame path is
covered by test_zone_editor.py).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from agent.app import Agent
from agent.config import check_zones, load_config
from agent.status import Status
from agent.zone_editor import ZoneEditor
from agent.zones import ZonesDoc
from engines.manifest import load_manifest
from tests.integration.test_zone_editor import browser, click_canvas  # noqa: F401 (the browser fixture)
from tests.support.agent_process import base_config, write_config

pytestmark = pytest.mark.integration

EVENT_TIMEOUT_S = 60.0


def test_a_zone_drawn_in_the_browser_is_used_by_the_running_agent(
    tmp_path: Path,
    browser,  # noqa: F811 (the fixture imported above)
    mosquitto,
    subscriber,
    models_dir: Path,
    media_dir: Path,
) -> None:
    cameras = [{"id": "plaza", "url": str(media_dir / "vtest.avi"), "loop": True}]
    config, zones = load_config(write_config(tmp_path, base_config(models_dir, mosquitto.port, cameras), {}))
    manifest = load_manifest(config.model.manifest)
    agent = Agent(config, zones)
    events = subscriber(mosquitto, "edge/v1/site-1/box-1/#")
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), name="agent", daemon=True)
    runner.start()

    def save_zones(doc: ZonesDoc) -> int:
        check_zones(config, doc, manifest.classes, manifest.class_map, where="zone editor")
        agent.swap_zones(doc, actor="technician")
        return doc.version

    try:
        events.wait_for(lambda ms: any(_status(m).state == "online" for m in ms if m.topic.endswith("/status")), 60)
        editor = ZoneEditor(
            snapshot=lambda _camera_id: None,
            current_zones=lambda: agent.zones,
            save_zones=save_zones,
            camera_ids=lambda: [c.id for c in config.cameras],
            audit=lambda action, **details: agent.audit("technician", action, **details),
            port=0,
        )
        with editor:
            page = browser.new_page()
            page.goto(editor.url)
            page.wait_for_selector("body[data-ready='1']")
            click_canvas(page, (0.01, 0.01), (0.99, 0.01), (0.99, 0.99), (0.01, 0.99))  # the whole frame
            page.click("#close-shape")
            page.fill("#shape-id", "everywhere")
            page.check("#rule-occupancy")
            page.click("#add-shape")
            page.click("#save")
            page.wait_for_selector("#message.ok >> text=saved: zones version 2")
            page.close()
        occupancy = events.wait_for(
            lambda ms: any(m.topic.endswith("/events/zone_occupancy") for m in ms), EVENT_TIMEOUT_S
        )
    finally:
        stop.set()
        runner.join(timeout=60)
    bodies = [json.loads(m.payload)["body"] for m in occupancy if m.topic.endswith("/events/zone_occupancy")]
    assert bodies and all(b["zone_id"] == "everywhere" for b in bodies)
    # the status the agent publishes (at the latest its final one) shows the new version
    events.wait_for(lambda ms: any(_status(m).zones_version == 2 for m in ms if m.topic.endswith("/status")), 10)
    audit = [json.loads(line) for line in (config.state_dir / "audit.jsonl").read_text().splitlines()]
    actions = [r["action"] for r in audit]
    assert "zone_editor.save" in actions and "zones_change" in actions
    assert actions.index("zone_editor.save") < actions.index("zones_change")


def _status(message) -> Status:
    return Status.model_validate_json(message.payload)
