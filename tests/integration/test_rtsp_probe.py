"""Why a camera does not open, asked of a real RTSP server (GStreamer's, asking for a login as cameras do), through
the reader a technician's agent runs and the doctor's camera check."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.io.rtsp_probe import why_not_open
from agent.io.sources import CameraReader
from agent.settings.camera import CameraConfig
from agent.tools.doctor import check_camera
from testbed.services import RtspServer, free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "admin", "Secret@123"  # an @ in the password, unencoded, as technicians type it


def _with_login(server: RtspServer, user: str, password: str, path: str | None = None) -> str:
    return f"rtsp://{user}:{password}@127.0.0.1:{server.port}/{path or server.name}"


@pytest.mark.parametrize("method", ["digest", "basic"])
def test_the_camera_is_asked_why(method: str, rtsp_server: Callable[..., RtspServer], media_dir: Path) -> None:
    server = rtsp_server(media_dir / "vtest.avi", "cam", login=(USER, PASSWORD, method))
    assert why_not_open(_with_login(server, USER, PASSWORD), 5.0) is None  # it serves the stream to this login
    assert why_not_open(_with_login(server, USER, "Wr0ngPa55"), 5.0) == (
        "the camera refused the user or password in the url (401 Unauthorized): check them"
    )
    assert why_not_open(server.url, 5.0) == (
        "the camera asks for a login (401 Unauthorized): put it in the url, rtsp://user:password@host/path"
    )
    assert why_not_open(_with_login(server, USER, PASSWORD, "cam2"), 5.0) == (
        "the camera has no stream at /cam2 (404 Not Found): check the path (the camera's manual)"
    )


def test_nothing_listening_is_said_with_the_address() -> None:
    port = free_port()
    assert why_not_open(f"rtsp://127.0.0.1:{port}/cam", 5.0) == (
        f"nothing listens at 127.0.0.1:{port} (connection refused): check the address, the port, and that the "
        "camera is on"
    )


def test_a_wrong_password_is_what_the_agent_and_the_doctor_say(
    rtsp_server: Callable[..., RtspServer], media_dir: Path, captured_logs: list[dict]
) -> None:
    server = rtsp_server(media_dir / "vtest.avi", "cam", login=(USER, PASSWORD, "digest"))
    config = CameraConfig(id="door", url=_with_login(server, USER, "Wr0ngPa55"), reconnect_min_s=5.0, reconnect_max_s=10.0)
    with CameraReader(config):
        deadline = time.monotonic() + 30
        while not any(r["event"] == "camera.offline" for r in captured_logs) and time.monotonic() < deadline:
            time.sleep(0.05)
    offline = next(r for r in captured_logs if r["event"] == "camera.offline")
    said = "cannot open source: the camera refused the user or password in the url (401 Unauthorized): check them"
    assert offline["detail"] == said and "Wr0ngPa55" not in repr(captured_logs)
    doctor = check_camera(config, measure_s=0.5)
    assert not doctor.ok and doctor.detail == f"{config.redacted_url}: {said}"
