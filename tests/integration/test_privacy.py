"""Privacy as a structural property, checked on the code and on a real run.

- No code that can encode or write an image is reachable from the MQTT-facing
  modules (the link and the OTA applier it hands messages to): a message
  cannot turn on an image output that the code it reaches does not contain.
- The real agent, on a real clip and a real broker, subscribes to nothing,
  publishes health at its configured interval, serves the same figures on
  127.0.0.1 for Prometheus, and everything it sends passes the egress check
  (the `mosquitto` fixture's watcher).
"""

from __future__ import annotations

import ast
import re
import urllib.request
from pathlib import Path

import pytest

from agent.tools.schema import SCHEMAS, TOPICS
from agent.wire.status import Health
from testbed.agent_process import REPO, AgentProcess, base_config, write_config
from testbed.services import free_port

pytestmark = pytest.mark.integration

IMAGE_OUTPUT = re.compile(r"\b(imencode|imwrite|VideoWriter|PIL|Image\.save)\b")
# the modules that handle what arrives from the network, and every module they import
NETWORK_FACING = ["agent.io.mqtt", *sorted(f"agent.ota.{p.stem}" for p in (REPO / "agent" / "ota").glob("*.py"))]


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports_of(name: str, path: Path) -> set[str]:
    """Our modules that `name` imports (absolute and relative), from its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found |= {base, *(f"{base}.{a.name}" for a in node.names)}
    return {m for m in found if m.split(".")[0] in ("agent", "engines") and module_file(m)}


def closure(roots: list[str]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen and (path := module_file(name)):
            seen.add(name)
            todo.extend(imports_of(name, path))
    return seen


def test_no_image_output_is_reachable_from_a_network_message():
    reachable = closure(NETWORK_FACING)
    assert {"agent.io.mqtt", "agent.io.outbox", "agent.settings.config"} <= reachable  # the walk does follow imports
    offenders = {m for m in reachable if IMAGE_OUTPUT.search(module_file(m).read_text())}
    assert offenders == set(), f"image encoders reachable from MQTT-facing code: {sorted(offenders)}"
    # the detector reads frames, it never writes one: it stays in the closure on purpose
    assert "agent.io.zone_editor" not in reachable  # the one module that encodes a frame (for a local browser)


def test_every_published_topic_has_a_published_schema():
    assert set(TOPICS.values()) <= set(SCHEMAS.values())


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        return r.read().decode()


def test_the_real_agent_subscribes_to_nothing_and_reports_health_locally(tmp_path, mosquitto, subscriber, models_dir, media_dir):
    port = free_port()
    cameras = [{"id": "plaza", "url": str(media_dir / "vtest.avi"), "replay": "realtime", "loop": True}]
    config = base_config(models_dir, mosquitto.port, cameras) | {"health": {"interval_s": 1.0, "prometheus_port": port}}
    zones = {"version": 1, "zones": [{"id": "all", "camera": "plaza", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "occupancy": {"settle_s": 0.5}}]}
    health = subscriber(mosquitto, "edge/v1/site-1/box-1/health")
    agent = AgentProcess(write_config(tmp_path, config, zones))
    try:
        got = health.wait_for(lambda ms: len(ms) >= 3, timeout_s=120)
        text = scrape(port)
    finally:
        assert agent.stop() == 0, agent.log_tail()
    reports = [Health.model_validate_json(m.payload) for m in got]
    gaps_s = [(b.ts - a.ts) / 1000 for a, b in zip(reports, reports[1:])]
    assert all(0.5 < g < 3.0 for g in gaps_s), gaps_s  # the configured interval, not the default 10 s
    assert reports[-1].cameras["plaza"].fps > 0 and "inference" in reports[-1].stages_ms
    assert 'edge_agent_camera_fps{camera="plaza"}' in text and "edge_agent_outbox_depth " in text
    log = mosquitto.log_path.read_text()
    assert "as box-1" in log and "Received SUBSCRIBE from box-1" not in log
