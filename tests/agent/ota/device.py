"""Test fixtures for the applier: golden frames, served models, and a live device (the real owner of
what is live over a real pipeline, tests/support/live_agent.py) with its applier."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.ota.applier import Applier
from agent.ota.control import AgentControl, Baseline, ModelRef
from agent.ota.report import DeviceIdentity, OtaStatus, StepSettings
from agent.ota.slots import SlotLayout
from agent.ota.state import OtaState
from agent.settings.trust import TrustStore
from agent.settings.zones import ZonesDoc
from tests.agent.ota.docs import (
    LIGHT_JSON,
    YOLOX_JSON,
    golden_reference,
    write_golden_frames,
    zones_doc,
)
from tests.agent.ota.manifests import AGENT_VERSION, DEVICE_ID, GROUPS, NOW
from tests.support.live_agent import LiveAgent

FAST_STEPS = {"health_window_s": 0.4, "health_min_frames": 2, "download_attempts": 2, "download_retry_delay_s": 0.0}


@dataclass(frozen=True)
class Golden:
    folder: Path
    yolox: dict[str, Any]
    light: dict[str, Any]


@pytest.fixture(scope="session")
def golden(tmp_path_factory: pytest.TempPathFactory, media_dir: Path, models_dir: Path) -> Golden:
    folder = tmp_path_factory.mktemp("golden")
    names = write_golden_frames(media_dir / "vtest.avi", folder)
    return Golden(
        folder,
        golden_reference(YOLOX_JSON, models_dir, folder, names),
        golden_reference(LIGHT_JSON, models_dir, folder, names),
    )


@dataclass
class Device:
    """A live agent, its applier, and what the applier reported."""

    live: LiveAgent
    applier: Applier
    layout: SlotLayout
    reports: list[OtaStatus] = field(default_factory=list)

    def state(self) -> OtaState:
        return self.layout.store.load()

    def states(self) -> list[str]:
        return [r.state for r in self.reports]


def make_applier(
    control: AgentControl,
    root: Path,
    trust: TrustStore,
    baseline: Baseline,
    golden_dir: Path,
    report: Callable[[OtaStatus], None],
    on_step: Callable[[str], None] = lambda point: None,
    identity: DeviceIdentity = DeviceIdentity(DEVICE_ID, GROUPS, AGENT_VERSION),
    **steps: Any,
) -> Applier:
    settings = StepSettings(golden_dir=golden_dir, **{**FAST_STEPS, **steps})
    return Applier(
        control, SlotLayout(root), trust, identity, baseline, settings, report, lambda: NOW, on_step
    )


@pytest.fixture
def device(
    tmp_path: Path, media_dir: Path, models_dir: Path, trust: TrustStore, golden: Golden
) -> Iterator[Callable[..., Device]]:
    """Factory: device(run_detector=True, camera=vtest.avi, **step settings) -> a running Device serving yolox_nano
    and zones v1."""
    agents: list[LiveAgent] = []

    def make(run_detector: bool = True, bad_sha256: str = "", camera: str | None = None, **steps: Any) -> Device:
        zones = ZonesDoc.model_validate(zones_doc(1))
        baseline = Baseline(ModelRef(YOLOX_JSON, models_dir), zones, {})
        root = tmp_path / "state" / "ota"
        live = LiveAgent(camera or str(media_dir / "vtest.avi"), baseline, SlotLayout(root), tmp_path / "zones.yaml",
                         run_detector, bad_sha256)  # fmt: skip
        agents.append(live.__enter__())
        reports: list[OtaStatus] = []
        applier = make_applier(live.control, root, trust, baseline, golden.folder, reports.append, **steps)
        return Device(live, applier, SlotLayout(root), reports)

    yield make
    for live in agents:
        live.__exit__(None, None, None)


@pytest.fixture(scope="session")
def model_bytes(models_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (models_dir / "yolox_nano.onnx", models_dir / "light_person_detector.onnx")}

