"""Health figures: the builder, the loop that never dies, and the Prometheus text on loopback."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from agent.io.health import HealthLoop, build_health
from agent.io.outbox import OutboxStats
from agent.io.prometheus import PrometheusServer, render
from agent.io.sources import ReaderStats
from agent.wire.status import Health


def health() -> Health:
    return build_health(
        "box-1",
        "0123456789abcdef",
        [ReaderStats("gate", "online", 1200, 3, 1, 24.987)],
        {"inference": {"p50": 10.0, "p95": 12.5, "p99": 14.0, "max": 20.0}},
        OutboxStats(depth=42, size_bytes=12600, oldest_age_s=3.14159, dropped=7, lost=0),
        mqtt_reconnects=2,
        usage={"cpu_percent": 55.0, "rss_mb": 180.5},
        detect_errors=0,
        mqtt_rejected=0,
        ota_refused=0,
    )


def test_prometheus_text_carries_the_health_figures():
    text = render(health())
    for line in [
        'edge_agent_camera_fps{camera="gate"} 24.99',
        'edge_agent_camera_dropped_frames_total{camera="gate"} 3',
        'edge_agent_camera_reconnects_total{camera="gate"} 1',
        'edge_agent_stage_latency_ms{stage="inference",quantile="0.95"} 12.5',
        "edge_agent_outbox_depth 42",
        "edge_agent_outbox_oldest_age_seconds 3.142",
        "edge_agent_outbox_dropped_total 7",
        "edge_agent_mqtt_reconnects_total 2",
        "edge_agent_rss_megabytes 180.5",
    ]:
        assert line in text.splitlines(), line
    assert "# TYPE edge_agent_outbox_dropped_total counter" in text


def test_the_endpoint_serves_metrics_on_loopback_only():
    latest = health()
    with PrometheusServer(0, lambda: latest) as server:
        assert server._server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert b"edge_agent_outbox_depth 42" in r.read()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5)
        assert e.value.code == 404


def test_the_health_loop_survives_failures_and_keeps_the_latest():
    published, calls = threading.Event(), []

    def snapshot() -> Health:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a broken figure")
        return health()

    def publish(h: Health) -> None:
        published.set()
        raise OSError("broker gone")

    with HealthLoop(snapshot, publish, interval_s=0.05) as loop:
        assert loop.latest is not None  # there from the start, for the first scrape
        assert published.wait(5)
        deadline = threading.Event()
        deadline.wait(0.3)
    assert len(calls) >= 4  # went on after both failures
