"""The zone editor in a real headless Chromium (Debian's /usr/bin/chromium driven by
Playwright, which never downloads a browser here), plus its HTTP guards.

The callbacks stand in for the agent: `save_zones` runs the config's own
`check_zones` against a real config (cameras and the real model's classes),
the snapshot is a real frame of the sample clip.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
import yaml

import agent.io.zone_editor as zone_editor
from agent.io.zone_editor import (
    IDLE_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_CONNECTIONS,
    TOKEN_HEADER,
    ZONE_RULES,
    ZoneEditor,
)  # fmt: skip
from agent.settings.config import AgentConfig, check_zones, load_config
from agent.settings.zones import MAX_POLYGON_POINTS, ZonesDoc
from engines.atomic import write_atomic
from engines.manifest import load_manifest
from tests.conftest import REPO
from tests.support.browser import click_canvas
from tests.support.services import tmpfs

pytestmark = pytest.mark.integration

UI_TIMEOUT_MS = 10_000


class FakeAgent:
    """The agent's side of the editor: zones in force, saves checked like a zones update (the real checks).

    Not the real agent: these tests drive the page through many saves and refusals in a browser, and what
    they test is the editor; the editor in front of the real agent and its pipeline is test_zone_editor_live.py."""

    def __init__(self, config: AgentConfig, zones: ZonesDoc, frame: np.ndarray) -> None:
        self.config, self.zones, self.frame = config, zones, frame
        self.manifest = load_manifest(config.model.manifest)
        self.saved: list[ZonesDoc] = []
        self.audited: list[tuple[str, dict[str, Any]]] = []

    def save_zones(self, doc: ZonesDoc) -> int:
        check_zones(self.config, doc, self.manifest.classes, self.manifest.class_map, where="zone editor")
        self.saved.append(doc)
        self.zones = doc
        return doc.version

    def editor(self, **kwargs: Any) -> ZoneEditor:
        return ZoneEditor(
            snapshot=lambda camera_id: self.frame if camera_id == "plaza" else None,
            current_zones=lambda: self.zones,
            save_zones=self.save_zones,
            camera_ids=lambda: [c.id for c in self.config.cameras],
            audit=lambda action, **details: self.audited.append((action, details)),
            **kwargs,
        )


@pytest.fixture
def agent(tmp_path: Path, media_dir: Path, models_dir: Path) -> FakeAgent:
    clip = media_dir / "vtest.avi"
    raw = {
        "device_id": "box-1", "site": "s1", "models_dir": str(models_dir), "state_dir": str(tmp_path),
        "model": {"manifest": str(REPO / "models" / "light_person_detector.json")},
        "cameras": [{"id": "plaza", "url": str(clip)}, {"id": "gate", "url": str(clip)}],
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    config, zones = load_config(tmp_path / "config.yaml")
    capture = cv2.VideoCapture(str(clip))
    ok, frame = capture.read()
    capture.release()
    assert ok
    return FakeAgent(config, zones, frame)


@pytest.fixture
def editor(agent: FakeAgent) -> Iterator[ZoneEditor]:
    with agent.editor(port=0) as running:
        yield running


@pytest.fixture
def page(browser, editor: ZoneEditor):
    page = browser.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(editor.page_url)
    page.wait_for_selector("body[data-ready='1']")
    yield page
    page.close()


def add_shape(page, name: str, classes: str = "person") -> None:
    page.fill("#shape-id", name)
    page.fill("#shape-classes", classes)
    page.click("#add-shape")


def test_a_click_near_the_pictures_edge_lands_on_it(page, agent: FakeAgent) -> None:
    # a zone drawn to the frame's edges holds the people it cuts (their boxes end on the last row)
    click_canvas(page, (0.005, 0.005), (0.995, 0.005), (0.995, 0.995), (0.005, 0.995))
    page.click("#close-shape")
    add_shape(page, "whole")
    page.click("#save")
    page.wait_for_selector("#message.ok >> text=saved: zones version 2")
    (doc,) = agent.saved
    assert np.array_equal(doc.zones[0].polygon, [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])


def test_draw_a_zone_and_a_line_save_and_the_agent_gets_them(page, agent: FakeAgent) -> None:
    assert page.locator("#frame-note").text_content() == "768x576"  # the real frame is on the canvas
    square = [(0.1, 0.2), (0.5, 0.2), (0.5, 0.7), (0.1, 0.7)]
    click_canvas(page, *square)
    page.click("#close-shape")
    if "crowd_density" in ZONE_RULES:  # the ground area belongs to the crowd density rule
        page.fill("#area-m2", "42.5")
    add_shape(page, "door")
    page.check("#tool-line")
    click_canvas(page, (0.6, 0.1), (0.6, 0.9))
    add_shape(page, "mid-path")
    assert page.locator("#shapes li").count() == 2
    page.click("#save")
    page.wait_for_selector("#message.ok >> text=saved: zones version 2")

    (doc,) = agent.saved
    assert doc.version == 2 and page.locator("#version").text_content() == "2"
    (zone,) = doc.zones
    assert (zone.id, zone.camera, zone.classes) == ("door", "plaza", ["person"]) and zone.intrusion is not None
    assert "crowd_density" not in ZONE_RULES or zone.crowd_density.area_m2 == 42.5
    assert np.allclose(zone.polygon, square, atol=0.01)
    (line,) = doc.lines
    assert (line.id, line.camera) == ("mid-path", "plaza") and np.allclose(
        line.points, [(0.6, 0.1), (0.6, 0.9)], atol=0.01
    )
    actions = [action for action, _ in agent.audited]
    assert actions[:3] == ["zone_editor.start", "zone_editor.page", "zone_editor.snapshot"]
    assert actions[-2:] == ["zone_editor.save", "zone_editor.saved"]
    assert agent.audited[-1][1] == {"old_version": 1, "new_version": 2}


def test_the_servers_rejections_are_shown_and_nothing_is_applied(page, agent: FakeAgent) -> None:
    click_canvas(page, (0.1, 0.1), (0.5, 0.5), (0.5, 0.1), (0.1, 0.5))  # a bow tie: its edges cross
    page.click("#close-shape")
    add_shape(page, "bowtie")
    page.click("#save")
    page.wait_for_selector("#message.error >> text=not simple")

    page.click("#shapes .delete")
    click_canvas(page, (0.1, 0.1), (0.4, 0.1), (0.4, 0.4))
    page.click("#close-shape")
    add_shape(page, "cars", classes="car")  # the configured model only knows persons
    page.click("#save")
    page.wait_for_selector("#message.error >> text=car")

    assert agent.saved == []
    assert [a for a, _ in agent.audited].count("zone_editor.save_rejected") == 2


def request(editor: ZoneEditor, method: str, path: str, body: bytes | None = None, **headers: str):
    """One request, with this boot's token unless `headers` say otherwise."""
    host, port = editor.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        sent = {k: v for k, v in {TOKEN_HEADER: editor.token, **headers}.items() if v is not None}
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def test_binds_to_loopback_only(agent: FakeAgent) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "localhost", "::"):
        with pytest.raises(ValueError, match="loopback"):
            agent.editor(host=host, port=0)


def test_http_guards(editor: ZoneEditor, agent: FakeAgent) -> None:
    good = json.dumps({"base_version": 1, "doc": {"zones": [], "lines": []}}).encode()
    json_headers = {"Content-Type": "application/json"}
    status, headers, _ = request(editor, "GET", "/")
    assert status == 200 and "frame-ancestors 'none'" in dict(headers)["Content-Security-Policy"]
    assert request(editor, "GET", "/", Host="evil.example:8765")[0] == 403  # DNS rebinding
    assert request(editor, "POST", "/api/zones", good, **json_headers, Origin="http://evil.example")[0] == 403
    assert request(editor, "POST", "/api/zones", b"x" * (MAX_BODY_BYTES + 1), **json_headers)[0] == 413
    assert request(editor, "POST", "/api/zones", b"{not json", **json_headers)[0] == 400
    stale = json.dumps({"base_version": 7, "doc": {"zones": [], "lines": []}}).encode()
    assert request(editor, "POST", "/api/zones", stale, **json_headers)[0] == 409
    assert request(editor, "GET", "/api/snapshot/nope")[0] == 404
    assert request(editor, "GET", "/api/snapshot/gate")[0] == 404  # no frame yet
    status, headers, jpeg = request(editor, "GET", "/api/snapshot/plaza")
    assert status == 200 and dict(headers)["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    assert agent.saved == []
    status, _, body = request(editor, "POST", "/api/zones", good, **json_headers)
    assert status == 200 and json.loads(body) == {"version": 2}


def test_the_port_opens_only_once_the_token_file_is_there(
    agent: FakeAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever waits for the port (a technician's script, `edge-agent status`) then reads the token
    file: while that file is being written, the port must still refuse connections."""
    refused = []

    def write_while_probing(path: Path, data: bytes, **kwargs: Any) -> None:
        port = urlsplit(json.loads(data)["url"]).port
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            refused.append(False)
        except ConnectionRefusedError:
            refused.append(True)
        zone_editor_write(path, data, **kwargs)

    zone_editor_write = zone_editor.write_atomic
    monkeypatch.setattr(zone_editor, "write_atomic", write_while_probing)
    token_file = tmp_path / "zone_editor.json"
    with agent.editor(port=0, token_file=token_file) as editor:
        assert refused == [True]
        assert request(editor, "GET", f"/?token={editor.token}", **{TOKEN_HEADER: None})[0] == 200


def test_every_request_needs_this_boots_token(agent: FakeAgent, tmp_path: Path) -> None:
    """Loopback is not trust: without the token nothing is served, least of all a frame."""
    token_file = tmp_path / "zone_editor.json"
    with agent.editor(port=0, token_file=token_file) as editor:
        # the token is where `edge-agent status` reads it, readable by its owner only
        assert json.loads(token_file.read_text()) == {"url": editor.page_url, "token": editor.token, "pid": os.getpid()}
        assert token_file.stat().st_mode & 0o777 == 0o600
        good = json.dumps({"base_version": 1, "doc": {"zones": [], "lines": []}}).encode()
        for method, path, body in [
            ("GET", "/", None), ("GET", "/api/snapshot/plaza", None), ("GET", "/api/zones", None),
            ("GET", "/api/cameras", None), ("GET", "/api/live/plaza", None), ("POST", "/api/zones", good),
        ]:  # fmt: skip
            for token in ("", "x" * len(editor.token), editor.token[:-1]):
                status, _, answer = request(editor, method, path, body, **{TOKEN_HEADER: token, "Content-Type": "application/json"})
                assert status == 401 and b"token" in answer and b"\xff\xd8" not in answer, (method, path)
        assert request(editor, "GET", f"/?token={editor.token}", **{TOKEN_HEADER: ""})[0] == 401  # a header wins
        status, _, page = request(editor, "GET", f"/?token={editor.token}", **{TOKEN_HEADER: None})
        assert status == 200 and b"<canvas" in page  # the page alone takes it from its URL
        assert request(editor, "GET", f"/api/zones?token={editor.token}", **{TOKEN_HEADER: None})[0] == 401
        first = editor.token
    assert not token_file.exists()  # gone with the editor
    with agent.editor(port=0) as again:
        assert again.token != first  # a new token every boot
    assert agent.saved == []


def test_saves_are_whole_documents_on_the_version_they_were_based_on(editor: ZoneEditor, agent: FakeAgent) -> None:
    square = [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4]]
    doc = {"zones": [{"id": "door", "camera": "plaza", "polygon": square, "intrusion": {}}], "lines": []}
    post = lambda body: request(editor, "POST", "/api/zones", json.dumps(body).encode(), **{"Content-Type": "application/json"})  # noqa: E731
    assert post({"base_version": 1, "doc": doc})[0] == 200
    for partial in ({"zones": []}, {"lines": []}, {}, {"zones": None, "lines": []}):  # never a silent wipe
        status, _, answer = post({"base_version": 2, "doc": partial})
        assert status == 400 and b"whole document" in answer
    status, _, answer = post({"base_version": 1, "doc": {"zones": [], "lines": []}})  # based on the old version
    assert status == 409 and b"version 2" in answer
    assert [d.version for d in agent.saved] == [2] and [z.id for z in agent.zones.zones] == ["door"]


def test_deep_nesting_and_idle_floods_are_bounded(editor: ZoneEditor, agent: FakeAgent) -> None:
    deep = b'{"base_version": 1, "doc": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    status, _, answer = request(editor, "POST", "/api/zones", deep, **{"Content-Type": "application/json"})
    assert status == 400 and b"nests deeper" in answer
    host, port = editor.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    idle = [socket.create_connection((host, int(port))) for _ in range(200)]  # connect, say nothing
    try:
        time.sleep(1)
        threads = [t for t in threading.enumerate() if "process_request_thread" in t.name]
        assert len(threads) <= MAX_CONNECTIONS  # the rest were closed at once, without a thread
        closed = 0
        for sock in idle:  # the server closes the idle ones after IDLE_TIMEOUT_S
            sock.settimeout(IDLE_TIMEOUT_S + 5)
            closed += sock.recv(1) == b""
        assert closed == len(idle)
    finally:
        for sock in idle:
            sock.close()
    assert request(editor, "GET", "/api/cameras")[0] == 200  # and it still serves


def _circle(n: int) -> list[list[float]]:
    return [[0.5 + 0.4 * math.cos(2 * math.pi * k / n), 0.5 + 0.4 * math.sin(2 * math.pi * k / n)] for k in range(n)]


def test_polygon_vertices_are_capped_in_the_editor_and_in_check_config(
    editor: ZoneEditor, agent: FakeAgent, tmp_path: Path
) -> None:
    """The issue's 250 KB polygon (369 s to save, 430 s per check-config) is refused at once,
    naming the cap; a polygon at the cap is checked quickly enough for the editor."""
    post = lambda zones: request(  # noqa: E731
        editor, "POST", "/api/zones", json.dumps({"base_version": agent.zones.version, "doc": {"zones": zones, "lines": []}}).encode(),
        **{"Content-Type": "application/json"},
    )  # fmt: skip
    status, _, answer = post([{"id": "big", "camera": "plaza", "polygon": _circle(MAX_POLYGON_POINTS + 1), "intrusion": {}}])
    assert status == 400 and f"at most {MAX_POLYGON_POINTS}".encode() in answer
    assert post([{"id": "ok", "camera": "plaza", "polygon": _circle(MAX_POLYGON_POINTS), "intrusion": {}}])[0] == 200

    huge = {"version": 1, "zones": [{"id": "big", "camera": "plaza", "polygon": _circle(9000), "intrusion": {}}]}
    raw = yaml.safe_load((tmp_path / "config.yaml").read_text())
    (tmp_path / "big-zones.yaml").write_text(yaml.safe_dump(huge))
    (tmp_path / "big.yaml").write_text(yaml.safe_dump({**raw, "zones_file": "big-zones.yaml"}))
    assert len((tmp_path / "big-zones.yaml").read_bytes()) > 250_000
    done = subprocess.run(
        [sys.executable, "-m", "agent.tools.cli", "check-config", str(tmp_path / "big.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "zones[0].polygon" in done.stderr and f"at most {MAX_POLYGON_POINTS}" in done.stderr


def test_a_zones_file_the_box_cannot_write_is_said_as_such_not_as_a_full_disk(agent: FakeAgent, tmp_path: Path) -> None:
    # the zones file on a real read-only filesystem, as /etc is to the installed service (ProtectSystem=strict)
    with tmpfs(tmp_path / "etc", "1m", read_only={"zones.yaml": "version: 1\nzones: []\n"}) as etc:
        zones_file = etc / "zones.yaml"

        def save_zones(doc: ZonesDoc) -> int:  # as the agent does: the checks, then the file rewritten
            check_zones(agent.config, doc, agent.manifest.classes, agent.manifest.class_map, where="zone editor")
            write_atomic(zones_file, yaml.safe_dump(doc.model_dump(mode="json")).encode())
            return doc.version

        agent.save_zones = save_zones  # type: ignore[method-assign]
        with agent.editor(port=0) as editor:
            body = {"base_version": 1, "doc": {"zones": [], "lines": []}}
            status, _, answer = request(editor, "POST", "/api/zones", json.dumps(body).encode(),
                                        **{"Content-Type": "application/json"})  # fmt: skip
    error = json.loads(answer)["error"]
    assert status == 500 and "disk" not in error, error
    assert error.startswith("the box cannot write the zones file (Read-only file system): nothing was changed; ")
    assert "a folder the agent may write" in error and "edge-agent doctor" in error
