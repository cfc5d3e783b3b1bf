"""A loopback server whose port another program holds: the agent runs on, warns while it lasts, serves once free."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from agent.io import port_retry
from agent.io.port_retry import PortRetry
from agent.io.prometheus import PrometheusServer
from testbed.services import taken_port

RETRY_S = 0.05


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(port_retry, "RETRY_S", RETRY_S)


@pytest.fixture
def holder() -> Iterator[socket.socket]:
    holder = taken_port()
    yield holder
    holder.close()


def _exporter(port: int) -> PortRetry[PrometheusServer]:
    return PortRetry(
        "prometheus", f"127.0.0.1:{port}", "health.prometheus_port", lambda: PrometheusServer(port, lambda: None)
    )


def _warnings(logs: list[dict]) -> int:
    return sum(r["event"] == "prometheus_port_unavailable" for r in logs)


def _metrics_status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_taken_port_is_warned_about_while_it_lasts_and_served_once_free(
    captured_logs: list[dict], holder: socket.socket
) -> None:
    port = holder.getsockname()[1]
    address = f"127.0.0.1:{port}"
    with _exporter(port) as retry:
        assert retry.server is None and retry.unavailable == f"{address}: Address already in use"
        deadline = time.monotonic() + 10
        while _warnings(captured_logs) < 3:
            assert time.monotonic() < deadline, captured_logs
            time.sleep(RETRY_S)
        warning = next(r for r in captured_logs if r["event"] == "prometheus_port_unavailable")
        assert warning["log_level"] == "warning" and warning["address"] == address
        assert "health.prometheus_port" in warning["hint"] and warning["error"] == "Address already in use"
        holder.close()  # the other program goes
        while retry.server is None:
            assert time.monotonic() < deadline, captured_logs
            time.sleep(RETRY_S)
        assert retry.unavailable is None
        assert _metrics_status(port) == 503  # ours now: no health figures yet
    with pytest.raises(ConnectionRefusedError):  # closed with the agent
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_free_port_is_served_at_once_and_nothing_is_retried(captured_logs: list[dict]) -> None:
    opened = []

    def open_server() -> PrometheusServer:
        opened.append(PrometheusServer(0, lambda: None))
        return opened[-1]

    with PortRetry("prometheus", "127.0.0.1:0", "health.prometheus_port", open_server) as retry:
        assert retry.server is opened[0] and retry.unavailable is None
        time.sleep(5 * RETRY_S)
        assert len(opened) == 1 and _metrics_status(retry.server.port) == 503
    assert not [r for r in captured_logs if r["log_level"] == "warning"]


def test_stopping_while_the_port_is_still_taken_ends_the_retries(
    captured_logs: list[dict], holder: socket.socket
) -> None:
    with _exporter(holder.getsockname()[1]) as retry:
        time.sleep(3 * RETRY_S)
    warned = _warnings(captured_logs)
    time.sleep(3 * RETRY_S)
    assert _warnings(captured_logs) == warned
    assert retry.server is None and not retry._thread.is_alive()
