"""`edge-agent status`'s table, and the zone editor's page read from its 0600 token file."""

from __future__ import annotations

import json
from pathlib import Path

from agent.tools.status import render, with_editor_page


def _figures() -> dict:
    return {
        "agent_version": "0.1.0", "device_id": "box-1", "boot_id": "5f1c2a9e0b7d4e11", "uptime_s": 3725.0,
        "config": "/etc/edge-agent/config.yaml",
        "broker": {"address": "broker:8883", "tls": True, "connected": True, "reconnects": 2, "last_error": ""},
        "model": {"name": "yolox_nano", "backend": "onnxruntime", "precision": "int8", "sha256": "ab" * 32},
        "zones_version": 4, "frames": 639, "events": 39, "errors": 0,
        "outbox": {"depth": 0, "oldest_age_s": 0.0, "delivered": 39, "dropped": 0},
        "ota": {"state": "rolled_back", "kind": "model", "version": 7,
                "error": {"code": "health_failed", "message": "no frames"}},
        "zone_editor": {"url": "http://127.0.0.1:8765/"},
        "cameras": {"door": {"state": "offline", "fps": 0.0, "frames": 10, "dropped": 0, "reconnects": 3}},
        "rules": [{"camera": "door", "kind": "line_count", "area": "entry", "events": 39}],
    }  # fmt: skip


def test_the_table_says_what_a_technician_checks(tmp_path: Path) -> None:
    (tmp_path / "zone_editor.json").write_text(json.dumps({"url": "http://127.0.0.1:8765/?token=t0k", "token": "t0k"}))
    lines = render(with_editor_page(_figures(), tmp_path)).splitlines()
    assert lines[0] == "edge-agent 0.1.0  device box-1  boot 5f1c2a9e0b7d4e11  up 1h02m05s"
    assert "broker   broker:8883 (TLS)  connected  reconnects 2" in lines
    assert "model    yolox_nano  onnxruntime int8  sha256 abababababababab" in lines
    assert "ota      model v7 rolled_back (health_failed: no frames)" in lines
    assert "editor   http://127.0.0.1:8765/?token=t0k" in lines
    assert lines[-5:] == [
        "CAMERA  STATE    FPS  FRAMES  DROPPED  RECONNECTS",
        "door    offline  0.0  10      0        3",
        "",
        "CAMERA  RULE        ZONE/LINE  EVENTS",
        "door    line_count  entry      39",
    ]


def test_without_the_token_file_the_table_says_where_it_is(tmp_path: Path) -> None:
    text = render(with_editor_page(_figures(), tmp_path))
    assert f"editor   http://127.0.0.1:8765/  ({tmp_path / 'zone_editor.json'} is missing or unreadable" in text
