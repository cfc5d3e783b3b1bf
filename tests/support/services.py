"""Fixtures over the real services on loopback (testbed/services.py): Mosquitto, a GStreamer RTSP camera,
an MQTT recorder; and a small real disk.

Loaded by tests/conftest.py through `pytest_plugins`. Every service runs as a
child process on 127.0.0.1 with a free port, is restartable (tests break and
heal it on purpose) and is terminated at teardown.

Every broker of the `mosquitto` fixtures has an egress watcher on `#`
(tests/support/egress.py): a test fails at teardown if anything that crossed
its broker could not have come from the agent or could carry a picture. A test
that publishes foreign payloads on purpose says so with
`@pytest.mark.egress_exempt("why")`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testbed.services import SYSTEM_PYTHON, Mosquitto, RtspServer, Subscriber, gst_rtsp_missing
from tests.support.egress import EgressWatcher

EGRESS_SETTLE_S = 0.3  # let messages already on the wire reach the watcher before judging


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "egress_exempt(reason): this test publishes foreign payloads on purpose; skip the egress check"
    )


def _watched(broker: Mosquitto, exempt: pytest.Mark | None) -> Iterator[Mosquitto]:
    """Run `broker` with an egress watcher; fail at teardown on any violation unless exempt."""
    broker.start()
    watcher = EgressWatcher(broker.host, broker.port)
    yield broker
    time.sleep(EGRESS_SETTLE_S)
    watcher.close()
    broker.stop()
    violations = watcher.violations()
    if violations and exempt is None:
        shown = "\n  ".join(violations[:20])
        pytest.fail(f"egress check: {len(violations)} of {len(watcher.messages)} messages must not leave a box:\n  {shown}")


@pytest.fixture
def mosquitto(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Mosquitto]:
    """A fresh broker per test, free to stop, kill and restart; egress-checked."""
    yield from _watched(Mosquitto(tmp_path / "mosquitto"), request.node.get_closest_marker("egress_exempt"))


@pytest.fixture(scope="session")
def mosquitto_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker shared by a session's tests; do not stop it in a test. Egress-checked at the end."""
    yield from _watched(Mosquitto(tmp_path_factory.mktemp("mosquitto")), None)


@pytest.fixture(scope="session")
def _gst_rtsp_available() -> None:
    reason = gst_rtsp_missing()
    if reason is not None:
        install = "apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{good,ugly,bad}"
        pytest.fail(f"{SYSTEM_PYTHON} cannot import GstRtspServer ({reason}): run deploy/setup-debian.sh ({install})")


@pytest.fixture
def rtsp_server(_gst_rtsp_available: None, tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    """Factory: rtsp_server(clip, name="cam", login=None) starts a camera serving `clip` and returns it."""
    servers: list[RtspServer] = []

    def start(clip: Path, name: str = "cam", login: tuple[str, str, str] | None = None) -> RtspServer:
        server = RtspServer(Path(clip), name, tmp_path / f"rtsp-{name}-{len(servers)}.log", login)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def subscriber() -> Iterator[Callable[..., Subscriber]]:
    """Factory: subscriber(broker, topic_filter, qos=1) -> a recording Subscriber, closed at teardown."""
    subs: list[Subscriber] = []

    def make(broker: Mosquitto, topic_filter: str, qos: int = 1) -> Subscriber:
        sub = Subscriber(broker.host, broker.port, topic_filter, qos)
        subs.append(sub)
        return sub

    yield make
    for sub in subs:
        sub.close()


@contextmanager
def tmpfs(mount_point: Path, size: str, read_only: dict[str, str] | None = None) -> Iterator[Path]:
    """A real small disk: a tmpfs of `size` (mount's syntax, e.g. "16m") mounted at a new
    `mount_point`, unmounted on exit. Needs root (CI runs as root; elsewhere the test skips).
    `read_only`: file name -> text written to it, then the disk remounted read-only."""
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        if read_only is not None:
            for name, text in read_only.items():
                (mount_point / name).write_text(text)
            subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB disk that fills up."""
    with tmpfs(tmp_path / "disk", "16m") as mount_point:
        yield mount_point
