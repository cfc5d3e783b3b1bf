"""A camera going offline is a warning with its address and reason, at every retry; coming online is info."""

from __future__ import annotations

import time
from pathlib import Path

from agent.io.sources import CameraReader
from agent.settings.camera import CameraConfig
from testbed.services import free_port


def _records_until(reader: CameraReader, event: str, logs: list[dict], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(r["event"] == event for r in logs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(r["event"] == event for r in logs), logs


def test_an_unreachable_camera_is_a_warning_with_its_address_and_reason_repeated_while_it_lasts(
    captured_logs: list[dict],
) -> None:
    url = f"rtsp://admin:Secret@123@127.0.0.1:{free_port()}/cam"  # nothing listens: FFmpeg is refused at once
    config = CameraConfig(id="door", url=url, reconnect_min_s=0.2, reconnect_max_s=0.4, open_timeout_s=2.0)
    logs = captured_logs
    with CameraReader(config):
        deadline = time.monotonic() + 20.0
        while sum(r["event"] == "camera.offline" for r in logs) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    offline = [r for r in logs if r["event"] == "camera.offline"]
    assert len(offline) >= 3, logs  # at every failed retry, not once
    for record in offline:
        assert record["log_level"] == "warning" and record["camera_id"] == "door"
        assert record["url"] == url.replace("Secret@123", "***")  # the address, never the password
        assert record["detail"].startswith("cannot open source: nothing listens at 127.0.0.1:") and record["retry_in_s"] >= 0.2
    assert "Secret" not in repr(logs)
    assert next(r for r in logs if r["event"] == "camera.connecting")["log_level"] == "info"


def test_a_camera_coming_online_is_info(media_dir: Path, captured_logs: list[dict]) -> None:
    config = CameraConfig(id="plaza", url=str(media_dir / "vtest.avi"))
    logs = captured_logs
    with CameraReader(config) as reader:
        _records_until(reader, "camera.online", logs)
    online = next(r for r in logs if r["event"] == "camera.online")
    assert online["log_level"] == "info" and online["detail"] == "768x576 @ 10.00 fps"


def test_the_camera_is_asked_why_once_per_offline_spell(captured_logs: list[dict], monkeypatch) -> None:
    """Each ask with the url's login is a login attempt, and cameras lock an account after a few: the reason
    found at the first failure is kept for the spell (the real probe, counted)."""
    from agent.io import sources

    asked: list[str] = []
    real = sources.why_not_open
    monkeypatch.setattr(sources, "why_not_open", lambda url, timeout_s: asked.append(url) or real(url, timeout_s))
    url = f"rtsp://127.0.0.1:{free_port()}/cam"
    with CameraReader(CameraConfig(id="door", url=url, reconnect_min_s=0.2, reconnect_max_s=0.4)):
        deadline = time.monotonic() + 20.0
        while sum(r["event"] == "camera.offline" for r in captured_logs) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    offline = [r for r in captured_logs if r["event"] == "camera.offline"]
    assert len(offline) >= 3 and asked == [url]
    assert len({r["detail"] for r in offline}) == 1 and "nothing listens at" in offline[0]["detail"]
