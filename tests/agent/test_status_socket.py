"""The status socket: one JSON document per connection, nothing read from the client."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.io.status_socket import StatusSocket, StatusUnavailable, read_status


def test_serves_the_snapshot_of_the_moment(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    path.write_text("left by a crashed agent")
    count = iter(range(100))
    with StatusSocket(path, lambda: {"n": next(count)}):
        assert read_status(path) == {"n": 0}
        assert read_status(path) == {"n": 1}
    assert not path.exists()
    with pytest.raises(StatusUnavailable, match="does not exist: is the agent running"):
        read_status(path)


def test_a_failing_snapshot_is_an_answer_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    with StatusSocket(path, lambda: 1 / 0):
        assert "could not take its figures" in read_status(path)["error"]


def test_a_stale_socket_says_the_agent_is_not_running(tmp_path: Path) -> None:
    path = tmp_path / "status.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))  # bound, never listening: what a killed agent leaves
        with pytest.raises(StatusUnavailable, match="nobody listens"):
            read_status(path)
