"""The agent as a real process (`python -m agent.tools.cli run`), configured by a dict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_config(folder: Path, config: dict, zones: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zones.yaml").write_text(yaml.safe_dump(zones))
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"zones_file": "zones.yaml", **config}))
    return path


def looping_plaza(media_dir: Path) -> list[dict]:
    """The cameras of a config: one, `plaza`, playing the sample clip in a loop."""
    return [{"id": "plaza", "url": str(media_dir / "vtest.avi"), "loop": True}]


def plaza_config(folder: Path, models_dir: Path, broker_port: int, media_dir: Path, zones: dict | None = None) -> Path:
    """The config file (and zones beside it) of an agent on `looping_plaza`; zones: occupancy over the whole frame."""
    zones = whole_frame_zones("plaza", occupancy={"settle_s": 0.2}) if zones is None else zones
    return write_config(folder, base_config(models_dir, broker_port, looping_plaza(media_dir)), zones)


def base_config(models_dir: Path, broker_port: int, cameras: list[dict], device_id: str = "box-1") -> dict:
    return {
        "device_id": device_id,
        "site": "site-1",
        "models_dir": str(models_dir),
        "state_dir": "state",
        "model": {"manifest": str(REPO / "models" / "yolox_nano.json")},
        "cameras": cameras,
        "broker": {"host": "127.0.0.1", "port": broker_port},
    }


class AgentProcess:
    """Runs the agent; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, config_path: Path, duration_s: float | None = None, env: dict | None = None) -> None:
        cmd = [sys.executable, "-m", "agent.tools.cli", "run", "--config", str(config_path)]
        if duration_s is not None:
            cmd += ["--duration", str(duration_s)]
        self.log_path = config_path.parent / "agent.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._log.flush()

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]


def whole_frame_zones(camera: str, **rules: dict) -> dict:
    """A zones document (version 1) with one zone `all` over the whole frame, carrying `rules`."""
    polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    return {"version": 1, "zones": [{"id": "all", "camera": camera, "polygon": polygon, **rules}]}
