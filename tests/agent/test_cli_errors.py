"""The mistakes a new user makes get an answer saying what was given, what was expected and
what to do; and the config is `--config FILE` everywhere, the positional form an alias."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.tools.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch, models_dir: Path, media_dir: Path) -> None:
    monkeypatch.setenv("EDGE_AGENT_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("EDGE_AGENT_MEDIA_DIR", str(media_dir))


def test_an_onnx_file_given_as_manifest(tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = models_dir / "yolox_nano.onnx"
    assert main(["models", "fetch", "--manifest", str(onnx), "--dest", str(tmp_path)]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert f"{onnx} is a model file, not a manifest" in err and "models/yolox_nano.json" in err
    assert "codec" not in err


def test_a_missing_calibration_clip_is_named_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the models folder is wrong too: had the model been opened first, that would be the answer
    clip = tmp_path / "nope.avi"
    argv = ["calibrate", "--model", str(REPO / "models/yolox_nano.json"), "--models-dir", str(tmp_path / "none"),
            "--frames", str(clip), "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--frames {clip}: no such video file" in err and "vtest.avi" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_model_file_says_where_to_point(tmp_path: Path, capsys: pytest.CaptureFixture[str], media_dir: Path) -> None:
    argv = ["calibrate", "--model", str(REPO / "models/yolox_nano.json"), "--models-dir", str(tmp_path),
            "--frames", str(media_dir / "vtest.avi"), "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert f"not found in {tmp_path}" in err and "models_dir or EDGE_AGENT_MODELS_DIR" in err and "--models-dir" in err


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"input": {"size_wh": [640, 640]}}, "the graph's input 'images' is (1, 3, 416, 416), manifest 'yolox_nano' says "
         "(B, 3, 640, 640) from input.size_wh [640, 640]: correct input.size_wh in the manifest"),
        ({"decoder": "yolov99"}, "unknown decoder 'yolov99': set the manifest's decoder to one of ['nanodet', 'yolox']"),
    ],
    ids=["input size of another graph", "unknown decoder"],
)
def test_a_manifest_that_disagrees_with_its_graph_fails_the_config_check_not_the_run(
    change: dict, said: str, tmp_path: Path, example_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((REPO / "models/yolox_nano.json").read_text())
    for key, value in change.items():
        manifest[key] = manifest[key] | value if isinstance(value, dict) else value
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    config = (REPO / "examples/vtest.yaml").read_text().replace("../models/yolox_nano.json", str(tmp_path / "m.json"))
    config = config.replace("vtest-zones.yaml", str(REPO / "examples/vtest-zones.yaml"))
    (tmp_path / "agent.yaml").write_text(config.replace("../var/state", str(tmp_path / "state")))
    for command in ("check-config", "run"):
        assert main([command, "--config", str(tmp_path / "agent.yaml")]) == EXIT_CONFIG
        err = capsys.readouterr().err
        assert err.startswith("config error: ") and said in err and "Traceback" not in err, err
    assert not (tmp_path / "state").exists()  # refused before anything was written


def test_check_config_on_a_zones_file(capsys: pytest.CaptureFixture[str]) -> None:
    zones = REPO / "examples" / "vtest-zones.yaml"
    assert main(["check-config", "--config", str(zones)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "this is a zones document" in err and "not an agent config" in err and "examples/vtest.yaml" in err
    assert "device_id" not in err.split("no device_id")[1]  # not "device_id: Field required"


@pytest.mark.parametrize("form", [["--config", "{}"], ["{}"]], ids=["option", "positional alias"])
def test_check_config_takes_config_either_way(form: list[str], example_env: None, capsys) -> None:
    config = REPO / "examples" / "vtest.yaml"
    assert main(["check-config", *(a.format(config) for a in form)]) == EXIT_OK
    assert f"{config}: ok (1 cameras" in capsys.readouterr().out


def test_two_different_configs_or_none_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["check-config", "a.yaml", "--config", "b.yaml"])
    assert exit_.value.code == 2 and "two configs given" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["run"])
    assert exit_.value.code == 2 and "give the agent's config with --config FILE" in capsys.readouterr().err


def test_doctor_without_a_config_says_how_to_get_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "config.yaml"
    assert main(["doctor", missing.as_posix()]) == EXIT_FAILURE  # the positional alias, as check-config's
    out = capsys.readouterr().out
    assert f"{missing}: cannot read: No such file or directory" in out
    assert "give the box's config with --config FILE" in out and f"edge-agent provision --config {missing}" in out
    assert "fix the file" not in out


def test_status_without_a_running_agent(tmp_path: Path, example_env: None, capsys) -> None:
    config = tmp_path / "vtest.yaml"
    shutil.copy(REPO / "examples" / "vtest.yaml", config)
    shutil.copy(REPO / "examples" / "vtest-zones.yaml", tmp_path / "vtest-zones.yaml")
    text = config.read_text().replace("../models/", f"{REPO}/models/").replace("../var/state", str(tmp_path / "state"))
    config.write_text(text)
    assert main(["status", "--config", str(config), "--once"]) == 1
    assert f"{tmp_path / 'state' / 'status.sock'} does not exist: is the agent running" in capsys.readouterr().err


def test_ctrl_c_during_start_up_is_a_line_and_130_not_a_traceback(example_env: None) -> None:
    """SIGINT while the CLI is still importing (numpy loaded, which only the CLI's imports load): as a
    technician's Ctrl-C in the first second of `edge-agent run`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.tools.entry", "run", "--config", str(REPO / "examples" / "vtest.yaml")],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "_multiarray_umath" not in Path(f"/proc/{proc.pid}/maps").read_text():
            time.sleep(0.001)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # whatever happened: no agent left running
        proc.wait()
    assert (proc.returncode, err) == (130, "edge-agent: interrupted\n")

