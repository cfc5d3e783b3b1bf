"""Mosquitto, a GStreamer RTSP camera and an MQTT recorder as real child processes on 127.0.0.1, each on a free
port, restartable (tests break and heal them on purpose) and terminated by their owner."""

from __future__ import annotations

import os
import pwd
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

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


def taken_port() -> socket.socket:
    """Another program listening on a loopback port (`getsockname()[1]`) until the socket is closed."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


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

    def __init__(self, workdir: Path, extra_conf: str = "") -> None:
        """`extra_conf`: more mosquitto.conf lines (e.g. an `acl_file`)."""
        self.port = free_port()
        self.workdir = workdir
        self.extra_conf = extra_conf
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
            + self.extra_conf
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


class RtspServer:
    """A clip served as an RTSP camera by testbed/rtsp_server.py (GStreamer).

    url: rtsp://127.0.0.1:<port>/<name>; start() after stop() serves on the same port. `login`: (user, password,
    "digest" or "basic") a client must give, as a camera asks (the url has none: a test writes its own).
    """

    def __init__(self, clip: Path, name: str, log_path: Path, login: tuple[str, str, str] | None = None) -> None:
        self.clip = clip
        self.name = name
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/{name}"
        self.log_path = log_path
        self.login = login
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        cmd = [SYSTEM_PYTHON, str(RTSP_SERVER_SCRIPT), "--clip", str(self.clip), "--port", str(self.port)]
        cmd += ["--name", self.name]
        if self.login is not None:
            cmd += ["--user", self.login[0], "--password", self.login[1], "--auth", self.login[2]]
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

    @property
    def pid(self) -> int:
        """The server's process id (to freeze it with SIGSTOP: a camera that hangs)."""
        assert self._proc is not None
        return self._proc.pid


def gst_rtsp_missing() -> str | None:
    """Why the system interpreter cannot run the RTSP server, or None if it can."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return f"{SYSTEM_PYTHON} not found"
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
    return None


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
