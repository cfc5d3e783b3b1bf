"""The one owner of what is live (agent/runtime/live.py), on the real pipeline, the real model and
real frames of vtest.avi: every swap at a frame boundary, the zones file kept to the committed
document, and the technician's save refused while the fleet holds the zones."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from agent.ota.control import Baseline, ModelRef
from agent.ota.slots import ZONES_FILE, SlotLayout
from agent.ota.state import OtaState, Update
from agent.settings.config import ConfigError
from agent.settings.zones import ZonesDoc
from tests.agent.ota.docs import LIGHT_JSON, YOLOX_JSON, zones_doc
from tests.support.live_agent import LiveAgent
from tests.support.services import tmpfs

pytestmark = pytest.mark.integration  # the real model

FRAMES_AFTER = 3  # frames that must run after a change, to see it in use


@pytest.fixture
def live(tmp_path: Path, media_dir: Path, models_dir: Path) -> Iterator[Callable[..., LiveAgent]]:
    """live(run_detector=False, layout=None) -> a running LiveAgent serving yolox_nano and zones v1,
    its zones file at tmp_path/zones.yaml."""
    agents: list[LiveAgent] = []

    def make(run_detector: bool = False, layout: SlotLayout | None = None) -> LiveAgent:
        baseline = Baseline(ModelRef(YOLOX_JSON, models_dir), zones(1), {})
        agent = LiveAgent(media_dir / "vtest.avi", baseline, layout, tmp_path / "zones.yaml", run_detector)
        agents.append(agent.__enter__())
        return agent

    yield make
    for agent in agents:
        agent.__exit__(None, None, None)


def zones(version: int, classes: tuple[str, ...] = ("person",)) -> ZonesDoc:
    return ZonesDoc.model_validate(zones_doc(version, classes))


def on_disk(agent: LiveAgent) -> int:
    assert agent.config.zones_file is not None
    return yaml.safe_load(agent.config.zones_file.read_text())["version"]


def wait_frames(agent: LiveAgent, count: int = FRAMES_AFTER) -> None:
    target = len(agent.processed) + count
    deadline = time.monotonic() + 30
    while len(agent.processed) < target:
        assert time.monotonic() < deadline, "frames stopped"
        time.sleep(0.01)


def test_a_model_swap_lands_between_two_frames_and_the_old_detector_is_closed(
    live: Callable[..., LiveAgent], models_dir: Path
) -> None:
    agent = live(run_detector=True)
    wait_frames(agent)
    control = agent.control
    (old,) = agent.opened
    control.switch_model(ModelRef(LIGHT_JSON, models_dir))
    light_sha = control.live_model_sha256()
    assert control.model.manifest.name == "light_person_detector"
    wait_frames(agent)
    shas = [p.model_sha256 for p in agent.processed]
    first_light = shas.index(light_sha)
    assert set(shas[:first_light]) == {old.sha256} and set(shas[first_light:]) == {light_sha}  # one boundary
    seqs = [p.seq for p in agent.processed]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a frame was lost or repeated at the swap"
    assert old.closed_on == "frame-loop" and agent.opened[1].closed_on is None  # closed between two batches
    assert ("ota", "model_change") in [(a, b) for a, b, _ in agent.audited] and agent.status_publications == 1


def test_zones_watching_another_class_reopen_the_detector_for_it(live: Callable[..., LiveAgent]) -> None:
    agent = live()
    control = agent.control
    assert control.model.classes == ["person"]
    control.swap_zones(zones(2, ("person", "car")), actor="test")
    assert sorted(control.model.classes or []) == ["car", "person"] and control.live_zones_version() == 2
    control.swap_zones(zones(3), actor="test")  # fewer classes: the open detector keeps serving
    assert sorted(control.model.classes or []) == ["car", "person"] and control.live_zones_version() == 3
    assert [d for a, b, d in agent.audited if b == "zones_change"] == [
        {"old_version": 1, "new_version": 2}, {"old_version": 2, "new_version": 3},
    ]  # fmt: skip


def test_zones_that_do_not_fit_the_model_change_nothing(live: Callable[..., LiveAgent]) -> None:
    agent = live()
    control = agent.control
    with pytest.raises(ConfigError):
        control.save_edited_zones(zones(2, ("unicorn",)))
    assert control.live_zones_version() == 1 and on_disk(agent) == 1 and agent.audited == []
    wait_frames(agent)  # the loop goes on


def test_a_technician_save_is_a_commit_that_a_rollback_returns_to(live: Callable[..., LiveAgent]) -> None:
    agent = live()
    control = agent.control
    assert control.save_edited_zones(zones(2)) == 2
    assert control.live_zones_version() == 2 and on_disk(agent) == 2 and control.committed_zones().version == 2
    control.switch_zones(zones(7))  # an OTA candidate in its health window: live, not committed, not on disk
    assert control.live_zones_version() == 7 and on_disk(agent) == 2
    control.switch_zones(control.committed_zones())  # its rollback
    assert control.live_zones_version() == 2 and on_disk(agent) == 2
    control.switch_zones(zones(8))
    control.commit("zones")  # passed its window
    assert control.committed_zones().version == 8 and on_disk(agent) == 8
    wait_frames(agent)


def test_the_editor_is_refused_while_the_fleet_holds_the_zones(live: Callable[..., LiveAgent], tmp_path: Path) -> None:
    layout = SlotLayout(tmp_path / "ota")
    agent = live(layout=layout)
    control = agent.control
    update = Update(kind="zones", version=3, envelope="{}", slot="a", previous=None, previous_version=0, step="download")
    layout.store.save(OtaState(update=update))
    with pytest.raises(ConfigError, match="being applied"):
        control.save_edited_zones(zones(2))
    layout.store.save(OtaState().with_kind("zones", active="a", active_version=3, last_version=3))
    with pytest.raises(ConfigError, match="managed over the air"):
        control.save_edited_zones(zones(2))
    assert control.live_zones_version() == 1 and on_disk(agent) == 1


def test_at_start_the_zones_file_is_rewritten_to_the_committed_document(
    live: Callable[..., LiveAgent], tmp_path: Path
) -> None:
    """A stop between an OTA zones commit and the file's write: the next start serves and writes the slot's."""
    layout = SlotLayout(tmp_path / "ota")
    slot = layout.reset("zones", "a")
    (slot / ZONES_FILE).write_text(zones(5).model_dump_json())
    layout.store.save(OtaState().with_kind("zones", active="a", active_version=3, last_version=3))
    agent = live(layout=layout)
    assert agent.control.live_zones_version() == 5 and on_disk(agent) == 5
    wait_frames(agent)


def test_a_swap_the_loop_never_reaches_fails_and_the_old_setup_stays(
    live: Callable[..., LiveAgent], models_dir: Path
) -> None:
    agent = live()
    control = agent.control
    agent.stop_loop()  # no frame boundary will come
    with pytest.raises(TimeoutError):
        control.switch_model(ModelRef(LIGHT_JSON, models_dir))
    yolox, light = agent.opened
    assert control.model.manifest.name == "yolox_nano" and control.pipeline.detector is yolox
    assert light.closed_on is not None and yolox.closed_on is None  # the withdrawn one is closed, not the live one


def test_a_zones_file_that_cannot_be_rewritten_at_start_does_not_stop_the_start(
    tmp_path: Path, media_dir: Path, models_dir: Path, captured_logs: list[dict]
) -> None:
    """An OTA zones commit on a box whose zones file the service cannot write (a read-only /etc): every start would
    fail on rewriting it. It serves the committed zones and says so instead."""
    layout = SlotLayout(tmp_path / "ota")
    slot = layout.reset("zones", "a")
    (slot / ZONES_FILE).write_text(zones(5).model_dump_json())
    layout.store.save(OtaState().with_kind("zones", active="a", active_version=3, last_version=3))
    with tmpfs(tmp_path / "etc", "1m", read_only={"zones.yaml": yaml.safe_dump(zones(1).model_dump(mode="json"))}) as etc:
        baseline = Baseline(ModelRef(YOLOX_JSON, models_dir), zones(1), {})
        with LiveAgent(media_dir / "vtest.avi", baseline, layout, etc / "zones.yaml", run_detector=False) as agent:
            assert agent.control.live_zones_version() == 5
            wait_frames(agent)
    (warning,) = [r for r in captured_logs if r["event"] == "zones_file_not_written"]
    assert warning["log_level"] == "warning" and warning["path"] == str(etc / "zones.yaml") and "state dir" in warning["hint"]
