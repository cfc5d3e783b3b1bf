"""The health figures as Prometheus text, on 127.0.0.1 only (stdlib http.server).

Bound to loopback by construction, not by configuration: a node exporter or an
agent on the same box scrapes it; nothing on the network can. It serves the
latest health snapshot, so it shows exactly what `.../health` carries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.wire.status import Health

HOST = "127.0.0.1"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_QUANTILES = {"p50": "0.5", "p95": "0.95", "p99": "0.99"}


def render(health: Health) -> str:
    """Prometheus text exposition (format 0.0.4) of one health message."""
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP edge_agent_{name} {help_}")
        out.append(f"# TYPE edge_agent_{name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            out.append(f"edge_agent_{name}{{{text}}} {value}" if text else f"edge_agent_{name} {value}")

    cams = health.cameras.items()
    metric("camera_fps", "gauge", "frames per second delivered by the camera", [({"camera": c}, h.fps) for c, h in cams])
    metric(
        "camera_detect_fps", "gauge", "frames per second that went through the detector",
        [({"camera": c}, h.detect_fps) for c, h in cams if h.detect_fps is not None],
    )  # fmt: skip
    metric("camera_frames_total", "counter", "frames read", [({"camera": c}, h.frames) for c, h in cams])
    metric("camera_dropped_frames_total", "counter", "frames dropped (pipeline behind)", [({"camera": c}, h.dropped) for c, h in cams])
    metric("camera_reconnects_total", "counter", "camera reopen attempts", [({"camera": c}, h.reconnects) for c, h in cams])
    metric("camera_online", "gauge", "1 if the camera delivers frames", [({"camera": c}, int(h.state == "online")) for c, h in cams])
    metric(
        "stage_latency_ms",
        "gauge",
        "per-stage latency over the recent window, milliseconds",
        [({"stage": s, "quantile": q}, getattr(lat, p)) for s, lat in health.stages_ms.items() for p, q in _QUANTILES.items()],
    )
    metric("stage_latency_max_ms", "gauge", "per-stage worst latency over the recent window", [({"stage": s}, lat.max) for s, lat in health.stages_ms.items()])
    ob = health.outbox
    metric("outbox_depth", "gauge", "events waiting for a broker acknowledgement", [({}, ob.depth)])
    metric("outbox_size_bytes", "gauge", "bytes of events waiting", [({}, ob.size_bytes)])
    metric("outbox_oldest_age_seconds", "gauge", "age of the oldest waiting event", [({}, ob.oldest_age_s)])
    metric("outbox_dropped_total", "counter", "events shed unsent (outbox full, too old, disk full)", [({}, ob.dropped)])
    metric("mqtt_reconnects_total", "counter", "broker connections lost", [({}, health.mqtt_reconnects)])
    metric("detect_errors_total", "counter", "detector batches that failed", [({}, health.detect_errors)])
    metric("mqtt_rejected_total", "counter", "events the broker refused for good", [({}, health.mqtt_rejected)])
    metric("ota_refused_total", "counter", "update messages refused", [({}, health.ota_refused)])
    metric("cpu_percent", "gauge", "process CPU over the last health interval", [({}, health.cpu_percent)])
    metric("rss_megabytes", "gauge", "resident memory", [({}, health.rss_mb)])
    return "\n".join(out) + "\n"


class PrometheusServer:
    """Serves `GET /metrics` on 127.0.0.1:`port` (0: any free port, see `.port`) from its own thread."""

    def __init__(self, port: int, latest: Callable[[], Health | None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                health = latest()
                if self.path != "/metrics" or health is None:
                    self.send_error(404 if self.path != "/metrics" else 503)
                    return
                body = render(health).encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # scrapes every few seconds would flood the journal

        self._server = ThreadingHTTPServer((HOST, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="prometheus", daemon=True)

    def __enter__(self) -> PrometheusServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
