"""Config loading: env overrides, relative paths, and bad configs refused with the
path of the bad field (exit 2 from the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.ota.control import ModelRef
from agent.runtime.live import open_detector
from agent.settings.config import ConfigError, load_config
from agent.tools.cli import EXIT_OK, main
from engines.onnxruntime_engine import cores

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def write_config(tmp_path, models_dir, media_dir, monkeypatch):
    """Writes a valid config + zones into tmp_path, with `edit(config, zones)` applied first.
    The config names its own models_dir, so the Makefile's override is cleared."""
    monkeypatch.delenv("EDGE_AGENT_MODELS_DIR", raising=False)

    def write(edit=lambda c, z: None) -> Path:
        config = {
            "device_id": "box-1",
            "site": "site-1",
            "models_dir": str(models_dir),
            "state_dir": "state",
            "zones_file": "zones.yaml",
            "model": {"manifest": str(REPO / "models" / "yolox_nano.json")},
            "cameras": [{"id": "cam1", "url": str(media_dir / "vtest.avi")}],
        }
        zones = {
            "version": 3,
            "zones": [{"id": "z1", "camera": "cam1", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]], "intrusion": {}}],
            "lines": [{"id": "l1", "camera": "cam1", "points": [[0.5, 0.2], [0.5, 0.8]]}],
        }
        edit(config, zones)
        (tmp_path / "zones.yaml").write_text(yaml.safe_dump(zones))
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write


def test_valid_config_loads_with_paths_relative_to_the_file(write_config, tmp_path):
    config, zones = load_config(write_config())
    assert config.state_dir == tmp_path / "state"
    assert zones.version == 3 and config.cameras[0].id == "cam1"


def test_environment_overrides_the_file(write_config, monkeypatch):
    monkeypatch.setenv("EDGE_AGENT_BROKER__PORT", "18830")
    monkeypatch.setenv("EDGE_AGENT_SITE", "other-site")
    config, _ = load_config(write_config())
    assert config.broker.port == 18830 and config.site == "other-site"


def test_a_bad_override_from_the_environment_is_named_as_such(write_config, monkeypatch):
    monkeypatch.setenv("EDGE_AGENT_BROKER__PASSWORD", "s3cret")
    monkeypatch.setenv("EDGE_AGENT_BROKER__PORT", "abc")
    with pytest.raises(ConfigError) as refused:
        load_config(write_config())
    assert "broker.port: Input should be a valid integer" in str(refused.value)
    assert str(refused.value).endswith("(from the environment variable EDGE_AGENT_BROKER__PORT, which overrides the file)")
    monkeypatch.setenv("EDGE_AGENT_BROKER__PORT", "18830")
    monkeypatch.setenv("EDGE_AGENT_CAMERAS", "notjson")  # a list from the environment is JSON
    with pytest.raises(ConfigError) as refused:
        load_config(write_config())
    assert "EDGE_AGENT_CAMERAS is not valid JSON: a list or mapping set from the environment is JSON" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_variables_are_expanded(write_config, monkeypatch, media_dir):
    monkeypatch.setenv("CLIPS", str(media_dir))
    path = write_config(lambda c, z: c["cameras"][0].update(url="${CLIPS}/vtest.avi"))
    config, _ = load_config(path)
    assert config.cameras[0].url == str(media_dir / "vtest.avi")


BAD = [
    ("unknown key", lambda c, z: c.update(colour="blue"), "colour: Extra inputs are not permitted"),
    ("misspelled key", lambda c, z: c.update(brokr={"host": "127.0.0.1"}),
     "brokr: Extra inputs are not permitted (did you mean 'broker'?)"),
    ("misspelled rule", lambda c, z: z["zones"][0].update(intrusoin={}),
     "zones[0].intrusoin: Extra inputs are not permitted (did you mean 'intrusion'?)"),
    ("unknown nested key", lambda c, z: c["broker"].update(hots="x") if "broker" in c else c.update(broker={"hots": "x"}), "broker.hots"),
    ("polygon with 2 points", lambda c, z: z["zones"][0].update(polygon=[[0.1, 0.1], [0.2, 0.2]]), "zones[0].polygon"),
    ("coordinate outside 0..1", lambda c, z: z["zones"][0].update(polygon=[[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]]),
     "zones[0].polygon: Value error, 1 of its points are off the frame, e.g. (1.5, 0.1): points are fractions"),
    ("polygon in pixels", lambda c, z: z["zones"][0].update(polygon=[[420, 170], [700, 170], [700, 500]]),
     "3 of its points are outside 0..1, e.g. (420, 170), which looks like pixels: points are fractions of the frame"),
    ("line off the frame", lambda c, z: z["lines"][0].update(points=[[1.2, 0.5], [1.5, 0.5]]),
     "lines[0].points: Value error, 2 of its points are off the frame, e.g. (1.2, 0.5)"),
    ("self-intersecting polygon", lambda c, z: z["zones"][0].update(polygon=[[0, 0], [1, 1], [1, 0], [0, 1]]), "not simple"),
    ("missing model file", lambda c, z: c.update(models_dir="/nonexistent"), "model"),
    ("missing clip", lambda c, z: c["cameras"][0].update(url="/nonexistent/clip.avi"), "cameras[0].url"),
    ("zone on unknown camera", lambda c, z: z["zones"][0].update(camera="cam9"),
     "unknown cameras ['cam9']; the config's cameras are ['cam1']: correct the zones' camera"),
    ("polygon of one point thrice", lambda c, z: z["zones"][0].update(polygon=[[0.2, 0.2]] * 3),
     "a polygon needs at least 3 points, got 2 (3 given, the last repeating the first"),
    ("unset variable", lambda c, z: c.update(site="${NO_SUCH_VARIABLE_X}"), "NO_SUCH_VARIABLE_X"),
    ("no camera", lambda c, z: c.update(cameras=[]), "cameras"),
    ("a # in an RTSP password", lambda c, z: c["cameras"][0].update(url="rtsp://admin:Secret#9@127.0.0.1/cam"),
     "the RTSP URL's port is not a number 1..65535 (a password holding # / ? is written %23 %2F %3F)"),
    ("unknown class", lambda c, z: z["lines"][0].update(classes=["unicorn"]), "unicorn"),
    ("no ONNX Runtime session", lambda c, z: c["model"].update(onnxruntime_sessions=0), "model.onnxruntime_sessions"),
    ("ONNX Runtime sessions for TensorRT", lambda c, z: c["model"].update(backend="tensorrt", onnxruntime_sessions=2),
     "onnxruntime_sessions applies to the onnxruntime backend only, not tensorrt"),
]


@pytest.mark.parametrize("what, edit, message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_refused_naming_the_problem(write_config, what, edit, message):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(write_config(edit))
    assert message in str(err.value)


def test_a_refused_rtsp_url_is_not_echoed(write_config):
    with pytest.raises(ConfigError) as refused:
        load_config(write_config(lambda c, z: c["cameras"][0].update(url="rtsp://admin:Secret#9@127.0.0.1/cam")))
    assert "Secret" not in str(refused.value)


def test_a_key_of_another_block_is_not_suggested_where_it_would_be_refused(write_config):
    with pytest.raises(ConfigError) as refused:
        load_config(write_config(lambda c, z: c.update(hots="x")))  # `host` is a key of broker:, not here
    assert str(refused.value).endswith("hots: Extra inputs are not permitted")


def test_a_yaml_typo_is_said_on_one_line_with_where(write_config):
    path = write_config()
    path.write_text(path.read_text() + "cameras_extra: [1, 2\nsite: x\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: not valid YAML: line ") and "<unicode string>" not in message, message
    assert "\n" not in message and "expected ',' or ']', but got ':' (while parsing a flow sequence)" in message


def test_a_zones_file_that_is_not_a_mapping_is_named(write_config):
    path = write_config()
    (path.parent / "zones.yaml").write_text("- zones\n- lines\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).endswith("zones.yaml: expected a mapping at the top level (zones:, lines:), got a YAML list")


def test_check_config_warns_when_no_rule_would_run(write_config, capsys):
    path = write_config()
    (path.parent / "zones.yaml").write_text("")  # empty, as a copy cut short leaves it
    assert main(["check-config", str(path)]) == EXIT_OK
    out = capsys.readouterr()
    assert "ok (1 cameras, 0 zones, 0 lines)" in out.out
    assert out.err == f"warning: {path.parent / 'zones.yaml'}: no zones or lines, so no rule runs on any camera\n"


@pytest.mark.parametrize("what, edit, message", BAD[:7] + BAD[9:10], ids=[b[0] for b in BAD[:7] + BAD[9:10]])
def test_check_config_exits_2_with_the_first_error(write_config, what, edit, message):
    proc = subprocess.run(
        [sys.executable, "-m", "agent.tools.cli", "check-config", str(write_config(edit))], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert message in proc.stderr


def test_check_config_warns_of_a_zone_that_turns_on_no_rule(write_config, capsys):
    path = write_config(lambda c, z: z["zones"].append({"id": "courtyard", "camera": "cam1", "polygon": [[0, 0], [1, 0], [1, 1]]}))
    assert main(["check-config", str(path)]) == EXIT_OK
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {path.parent / 'zones.yaml'}: zones ['courtyard'] turn on no rule, so they watch "
                          "nothing: give each a rule block (intrusion:, "), err


@pytest.mark.parametrize(("sessions", "split"), [(None, min(cores(), 4)), (1, 0), (2, 2)])
def test_the_onnxruntime_sessions_setting_reaches_the_engine(write_config, sessions, split):
    """1: one session on every core for every batch; N: batches split between N more sessions."""
    config, zones = load_config(write_config(lambda c, z: c["model"].update(onnxruntime_sessions=sessions)))
    detector, _ = open_detector(config, ModelRef(config.model.manifest, config.models_dir), zones)
    with detector:
        assert len(detector._engine._split) == (split if split > 1 else 0)


def test_a_damaged_model_file_is_refused_before_anything_starts(write_config, tmp_path, models_dir):
    """A copy cut short (or another model under its name) is caught by check-config, not by a crash at run."""
    damaged = tmp_path / "models"
    damaged.mkdir()
    (damaged / "yolox_nano.onnx").write_bytes((models_dir / "yolox_nano.onnx").read_bytes()[:1_000_000])
    path = write_config(lambda c, z: c.update(models_dir=str(damaged)))
    proc = subprocess.run([sys.executable, "-m", "agent.tools.cli", "check-config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"model: {damaged / 'yolox_nano.onnx'}: sha256 mismatch" in proc.stderr and "models fetch" in proc.stderr


def test_check_config_accepts_the_example(models_dir, media_dir):
    env = {**os.environ, "EDGE_AGENT_MODELS_DIR": str(models_dir), "EDGE_AGENT_MEDIA_DIR": str(media_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "agent.tools.cli", "check-config", str(REPO / "examples" / "vtest.yaml")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
