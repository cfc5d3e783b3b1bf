"""sd_notify over a real AF_UNIX datagram socket, as systemd would listen on it."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.io import sdnotify

TICK_S = 0.05  # WATCHDOG_USEC=100000 -> pings every 50 ms


class Listener:
    """The systemd side: a bound datagram socket collecting received messages."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(0.01)

    def drain(self) -> list[str]:
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return messages

    def collect(self, duration_s: float) -> list[str]:
        messages: list[str] = []
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            messages += self.drain()
        return messages


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield Listener(sock)


@pytest.fixture
def armed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", str(int(TICK_S * 2 * 1e6)))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (sdnotify.ready, "READY=1"),
        (sdnotify.watchdog, "WATCHDOG=1"),
        (sdnotify.stopping, "STOPPING=1"),
        (lambda: sdnotify.status("2 cameras, 24.9 fps"), "STATUS=2 cameras, 24.9 fps"),
        (lambda: sdnotify.status("line one\nREADY=1"), "STATUS=line one READY=1"),
    ],
)
def test_messages_reach_the_socket(listener: Listener, call, expected: str) -> None:
    assert call() is True
    assert listener.collect(0.05) == [expected]


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready() is True
        assert Listener(sock).collect(0.05) == ["READY=1"]


def test_no_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    with sdnotify.Watchdog(lambda: "x") as dog:
        dog.beat()
        assert dog._thread is None


def test_unreachable_socket_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert sdnotify.ready() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected_s"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        (None, None, None),
        ("0", None, None),
        ("garbage", None, None),
    ],
)
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec, pid, expected_s) -> None:
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            monkeypatch.setenv(key, value)
    assert sdnotify.watchdog_interval_s() == expected_s


def test_watchdog_pings_only_while_beats_come(listener: Listener, armed: None) -> None:
    stop_beating = threading.Event()

    def pipeline(dog: sdnotify.Watchdog) -> None:
        while not stop_beating.wait(TICK_S / 5):
            dog.beat()

    with sdnotify.Watchdog() as dog:
        frames = threading.Thread(target=pipeline, args=(dog,))
        frames.start()
        alive = listener.collect(10 * TICK_S)
        stop_beating.set()
        frames.join()
        listener.collect(4 * TICK_S)  # ticks that may still see the last beats, with slack for a busy CI
        hung = listener.collect(10 * TICK_S)
    assert alive.count("WATCHDOG=1") >= 5
    assert hung == []


def test_watchdog_status_summary(listener: Listener, armed: None) -> None:
    with sdnotify.Watchdog(lambda: "cams 2/2\nfps 25") as dog:
        dog.beat()
        messages = listener.collect(3 * TICK_S)
    assert messages[0] == "WATCHDOG=1\nSTATUS=cams 2/2 fps 25"
    assert "STATUS=cams 2/2 fps 25" in messages[1:]  # status keeps coming without beats


def test_a_beat_before_the_thread_runs_counts(
    listener: Listener, armed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The thread starts late (a busy box): a beat between start and its first run is progress.
    run = sdnotify.Watchdog._run

    def late(self: sdnotify.Watchdog, *args: int) -> None:
        time.sleep(TICK_S / 2)
        run(self, *args)

    monkeypatch.setattr(sdnotify.Watchdog, "_run", late)
    with sdnotify.Watchdog() as dog:
        dog.beat()
        messages = listener.collect(2.5 * TICK_S)
    assert messages and messages[0] == "WATCHDOG=1"


def test_failing_summary_keeps_the_watchdog_alive(listener: Listener, armed: None) -> None:
    def broken() -> str:
        raise RuntimeError("boom")

    with sdnotify.Watchdog(broken) as dog:
        for _ in range(6):
            dog.beat()
            time.sleep(TICK_S / 2)
        messages = listener.drain()
    assert "WATCHDOG=1" in messages
    assert not any("STATUS" in m for m in messages)


def test_exit_joins_the_thread(listener: Listener, armed: None) -> None:
    with sdnotify.Watchdog() as dog:
        thread = dog._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()
