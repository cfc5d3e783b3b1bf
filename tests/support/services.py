"""Real services on loopback for tests: Mosquitto, a GStreamer RTSP camera, an MQTT recorder.

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
import pwd
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.support.egress import EgressWatcher

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
# GStreamer's gi bindings come from Debian and exist only for its interpreter.
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Block until host:port accepts a TCP connection; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s} s")


def _terminate(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Mosquitto:
    """A real Mosquitto broker on 127.0.0.1:port with persistence under `workdir`.

    start() after stop()/kill() reuses the port and the persistence, like a
    broker restart in the field.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        # `user` keeps a broker started as root from switching to an account
        # that cannot write the persistence directory.
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            # as deploy/mosquitto/mosquitto.conf: a snapshot every 5 s (what a SIGKILL loses),
            # and room for a long backlog queued for a consumer
            "autosave_interval 5\n"
            "max_queued_messages 200000\n"
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"log_dest file {self.log_path}\n"
            "log_type all\n"
        )
        self._proc = subprocess.Popen([MOSQUITTO_BIN, "-c", str(conf)], stdin=subprocess.DEVNULL)
        wait_for_port(self.host, self.port, START_TIMEOUT_S, self._proc)

    def stop(self) -> None:
        """Graceful stop (SIGTERM): the broker saves its persistence file."""
        _terminate(self._proc)

    def kill(self) -> None:
        """Crash (SIGKILL): no goodbye to clients, no final save."""
        if self.running:
            self._proc.kill()
            self._proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The broker's process id (to freeze it with SIGSTOP, for instance)."""
        return self._proc.pid


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


class RtspServer:
    """A clip served as an RTSP camera by tests/support/rtsp_server.py (GStreamer).

    url: rtsp://127.0.0.1:<port>/<name>; start() after stop() serves on the same port.
    """

    def __init__(self, clip: Path, name: str, log_path: Path) -> None:
        self.clip = clip
        self.name = name
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/{name}"
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        cmd = [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--clip", str(self.clip), "--port", str(self.port)]
        cmd += ["--name", self.name]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if sel.select(timeout=deadline - time.monotonic()):
                    line = self._proc.stdout.readline()
                    if line.startswith(b"READY"):
                        return
                    if not line:  # EOF: the server exited
                        break
        _terminate(self._proc)
        log_tail = self.log_path.read_text()[-2000:]
        raise RuntimeError(f"RTSP server for {self.clip} did not start; see {self.log_path}:\n{log_tail}")

    def stop(self) -> None:
        _terminate(self._proc)
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()


def _gst_rtsp_missing() -> str | None:
    """Why the system interpreter cannot run the RTSP server, or None if it can."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return f"{SYSTEM_PYTHON} not found"
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
    return None


@pytest.fixture(scope="session")
def _gst_rtsp_available() -> None:
    reason = _gst_rtsp_missing()
    if reason is not None:
        install = "apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{good,ugly,bad}"
        pytest.fail(f"{SYSTEM_PYTHON} cannot import GstRtspServer ({reason}): run deploy/setup-debian.sh ({install})")


@pytest.fixture
def rtsp_server(_gst_rtsp_available: None, tmp_path: Path) -> Iterator[Callable[..., RtspServer]]:
    """Factory: rtsp_server(clip, name="cam") starts a camera serving `clip` and returns it."""
    servers: list[RtspServer] = []

    def start(clip: Path, name: str = "cam") -> RtspServer:
        server = RtspServer(Path(clip), name, tmp_path / f"rtsp-{name}-{len(servers)}.log")
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """Records every message matching `topic_filter` on a broker (paho-mqtt v2, MQTT 5).

    The constructor returns once the broker acknowledged the subscription, so
    nothing published afterwards is missed.
    """

    def __init__(self, host: str, port: int, topic_filter: str, qos: int = 1) -> None:
        self.topic_filter = topic_filter
        self._messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_connect = lambda client, *_: client.subscribe(topic_filter, qos)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.close()
            raise TimeoutError(f"no SUBACK for {topic_filter} from {host}:{port}")

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout_s: float) -> list[Received]:
        """Wait until predicate(messages so far) is true; returns them, or raises AssertionError listing them."""
        with self._cond:
            if self._cond.wait_for(lambda: predicate(list(self._messages)), timeout_s):
                return list(self._messages)
            got = [(m.topic, m.payload[:80], m.retain) for m in self._messages[-10:]]
        raise AssertionError(f"condition not met within {timeout_s} s on {self.topic_filter}; last messages: {got}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


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
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A real small disk: a tmpfs of `size` (mount's syntax, e.g. "16m") mounted at a new
    `mount_point`, unmounted on exit. Needs root (CI runs as root; elsewhere the test skips)."""
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB disk that fills up."""
    with tmpfs(tmp_path / "disk", "16m") as mount_point:
        yield mount_point
