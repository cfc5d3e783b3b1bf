"""Draw a zone in the editor (real Chromium) on the camera's real frame and see the running agent use it.

The agent runs in-process on the sample clip with no zones and `zone_editor.enabled`: it
starts the editor itself, with its own wiring (the pipeline's latest frame, `check_zones`,
the zones file written atomically, the live swap, the audit log).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from agent.io.zone_editor import TOKEN_HEADER, ZONE_EDITOR_TOKEN_FILE
from agent.runtime.app import Agent
from agent.settings.config import load_config
from agent.wire.status import Status
from testbed.agent_process import base_config, looping_plaza, write_config
from testbed.services import free_port, wait_for_port
from tests.support.browser import click_canvas

pytestmark = pytest.mark.integration

EVENT_TIMEOUT_S = 60.0
CLIP_SIZE_WH = (768, 576)  # vtest.avi


def test_a_zone_drawn_in_the_browser_on_the_live_frame_is_used_by_the_running_agent(
    tmp_path: Path,
    browser,  # noqa: F811 (the fixture imported above)
    mosquitto,
    subscriber,
    models_dir: Path,
    media_dir: Path,
) -> None:
    cameras = looping_plaza(media_dir)
    port = free_port()
    raw = {**base_config(models_dir, mosquitto.port, cameras), "zone_editor": {"enabled": True, "port": port}}
    config, zones = load_config(write_config(tmp_path, raw, {}))
    agent = Agent(config, zones)
    events = subscriber(mosquitto, "edge/v1/site-1/box-1/#")
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), name="agent", daemon=True)
    runner.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_port("127.0.0.1", port, EVENT_TIMEOUT_S)
        # the technician's way in: this boot's URL with its token, in a file only the agent's user reads
        token_file = config.state_dir / ZONE_EDITOR_TOKEN_FILE
        assert token_file.stat().st_mode & 0o777 == 0o600
        editor = json.loads(token_file.read_text())
        assert editor["url"] == f"{url}?token={editor['token']}"
        _wait_for_a_frame(url + "api/snapshot/plaza", editor["token"], EVENT_TIMEOUT_S)
        page = browser.new_page()
        page.goto(editor["url"])
        page.wait_for_selector("body[data-ready='1']")
        # the canvas takes the size of the frame the agent processed last: the real camera's picture
        page.wait_for_selector(f"#frame-note >> text={CLIP_SIZE_WH[0]}x{CLIP_SIZE_WH[1]}")
        assert page.eval_on_selector("#canvas", "c => [c.width, c.height]") == list(CLIP_SIZE_WH)
        click_canvas(page, (0.01, 0.01), (0.99, 0.01), (0.99, 0.99), (0.01, 0.99))  # the whole frame
        page.click("#close-shape")
        page.fill("#shape-id", "everywhere")
        page.check("#rule-occupancy")
        page.click("#add-shape")
        page.click("#save")
        page.wait_for_selector("#message.ok >> text=saved: zones version 2")
        occupancy = events.wait_for(
            lambda ms: any(m.topic.endswith("/events/zone_occupancy") for m in ms), EVENT_TIMEOUT_S
        )
        _the_page_shows_what_the_agent_sees(page, tmp_path / "live-view.png")
        page.close()
    finally:
        stop.set()
        runner.join(timeout=60)
    bodies = [json.loads(m.payload)["body"] for m in occupancy if m.topic.endswith("/events/zone_occupancy")]
    assert bodies and all(b["zone_id"] == "everywhere" for b in bodies)
    # saved where the next start reads it
    saved = yaml.safe_load(config.zones_file.read_text())
    assert saved["version"] == 2 and [z["id"] for z in saved["zones"]] == ["everywhere"]
    # the status the agent publishes (at the latest its final one) shows the new version
    events.wait_for(lambda ms: any(_status(m).zones_version == 2 for m in ms if m.topic.endswith("/status")), 10)
    audit = [json.loads(line) for line in (config.state_dir / "audit.jsonl").read_text().splitlines()]
    actions = [r["action"] for r in audit]
    assert {"zone_editor.start", "zone_editor.page", "zone_editor.snapshot", "zone_editor.stop"} <= set(actions)
    assert actions.index("zone_editor.save") < actions.index("zones_change")
    change = audit[actions.index("zones_change")]
    assert change["actor"] == "technician" and change["details"] == {"old_version": 1, "new_version": 2}


def _the_page_shows_what_the_agent_sees(page, screenshot: Path) -> None:
    """The live view: the tracks of the moment boxed with their ids on the frame, who is inside
    the zone now, and the zone's events as they come; checked in the page and on a screenshot."""
    timeout_ms = int(EVENT_TIMEOUT_S * 1000)
    page.wait_for_function("state.live && state.live.tracks.length > 0", timeout=timeout_ms)
    page.wait_for_selector("#events li >> text=zone_occupancy everywhere", timeout=timeout_ms)
    summary = page.locator("#shapes li[data-shape='everywhere'] .live")
    page.wait_for_function(
        "document.querySelector(\"#shapes li[data-shape='everywhere'] .live\").textContent.includes('#')", timeout=timeout_ms
    )
    text = summary.text_content()
    assert "inside now:" in text and "last: " in text and " everywhere " in text  # its own last event
    inside = page.evaluate("state.live.inside.everywhere")
    ids = page.evaluate("state.live.tracks.map((t) => t.id)")
    assert inside and set(inside) <= set(ids)  # the ones counted in the zone are tracks on screen
    page.locator("#canvas").screenshot(path=str(screenshot))
    shot = cv2.imread(str(screenshot))
    # the track boxes are drawn in #00e676 (BGR 118, 230, 0), a colour the clip does not have
    green = np.all(np.abs(shot.astype(int) - (118, 230, 0)) <= (40, 40, 40), axis=2)
    assert green.sum() > 200, f"no track boxes on the screenshot {screenshot}"


def _wait_for_a_frame(url: str, token: str, timeout_s: float) -> None:
    """Poll the snapshot endpoint until the pipeline has processed a frame of the camera."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={TOKEN_HEADER: token})
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.headers["Content-Type"] == "image/jpeg"
                return
        except urllib.error.HTTPError as e:
            assert e.code == 404  # no frame yet
        time.sleep(0.2)
    raise AssertionError(f"no frame from {url} within {timeout_s} s")


def _status(message) -> Status:
    return Status.model_validate_json(message.payload)
