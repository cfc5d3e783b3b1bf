"""deploy/install.sh in a throwaway root, its dry run, and the systemd unit it installs."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
INSTALL_SH = REPO / "deploy" / "install.sh"
UNIT = REPO / "deploy" / "edge-agent.service"

# What a --root install must leave behind: path -> octal mode.
EXPECTED_TREE = {
    "opt/edge-agent": 0o755,
    "etc/edge-agent": 0o750,
    "etc/edge-agent/config.yaml": 0o640,
    "var/lib/edge-agent/zones.yaml": 0o640,
    "opt/edge-agent/models": 0o755,
    "var/lib/edge-agent": 0o750,
    "var/log/edge-agent": 0o750,
    "etc/systemd/system/edge-agent.service": 0o644,
} | {f"opt/edge-agent/models/{m.name}": 0o644 for m in (REPO / "models").glob("*.json")}
# Host changes that --root must print as a plan and never run.
PLANNED = [
    "apt-get install -y --no-install-recommends python3-venv python3-pip ffmpeg mosquitto-clients",
    "useradd --system --user-group --home-dir /var/lib/edge-agent",
    "usermod --append --groups video edge-agent",
    "usermod --append --groups render edge-agent",
    "chown edge-agent:edge-agent /var/lib/edge-agent",
    "chown root:edge-agent /etc/edge-agent/config.yaml",
    "chown edge-agent:edge-agent /var/lib/edge-agent/zones.yaml",
    "-m venv /opt/edge-agent/venv",
    f"/opt/edge-agent/venv/bin/python -m pip install --upgrade {REPO}",
    "systemctl daemon-reload",
    "systemctl enable edge-agent.service",
]


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.example.yaml"
    path.write_text("site: test-site\n")
    return path


def install(root: Path, example: Path, *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable)  # the version preflight checks this interpreter
    return subprocess.run(
        ["bash", str(INSTALL_SH), "--root", str(root), "--config-example", str(example), *flags, str(REPO)],
        capture_output=True, text=True, env=env, check=check, timeout=60,
    )


def snapshot(root: Path) -> dict[str, tuple[int, str, int]]:
    """path -> (mode, sha256 of content or 'dir', mtime_ns of files): any rewrite shows."""
    tree = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            tree[rel] = (path.stat().st_mode & 0o7777, "dir", 0)
        else:
            st = path.stat()
            tree[rel] = (st.st_mode & 0o7777, hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)
    return tree


def test_root_install_writes_every_file(tmp_path: Path, example_config: Path) -> None:
    root = tmp_path / "root"
    out = install(root, example_config).stdout
    tree = snapshot(root)
    leaves = {p for p in tree if not any(q.startswith(p + "/") for q in tree)}
    assert leaves == {p for p in EXPECTED_TREE if not any(q.startswith(p + "/") for q in EXPECTED_TREE)}
    for rel, mode in EXPECTED_TREE.items():
        assert tree[rel][0] == mode, f"{rel}: {oct(tree[rel][0])} != {oct(mode)}"
    assert (root / "etc/systemd/system/edge-agent.service").read_bytes() == UNIT.read_bytes()
    assert (root / "etc/edge-agent/config.yaml").read_bytes() == example_config.read_bytes()
    plan = [line.removeprefix("plan: ") for line in out.splitlines() if line.startswith("plan: ")]
    for command in PLANNED:
        assert any(command in line for line in plan), f"not planned: {command}\n{out}"
    ran = [line for line in out.splitlines() if line.startswith("+ ")]
    assert all(line.startswith(("+ install ", "+ chmod ")) for line in ran), "only file writes run under --root"
    assert not any("systemctl start" in line for line in plan)  # enabled, not started: provision first
    assert "--system-site-packages" not in out  # x86


def test_second_run_changes_nothing(tmp_path: Path, example_config: Path) -> None:
    root = tmp_path / "root"
    install(root, example_config)
    first = snapshot(root)
    out = install(root, example_config).stdout
    assert snapshot(root) == first
    assert "keeping existing" in out and "up to date" in out


def test_existing_config_is_kept(tmp_path: Path, example_config: Path) -> None:
    root = tmp_path / "root"
    install(root, example_config)
    config = root / "etc/edge-agent/config.yaml"
    config.write_text("site: provisioned\n")
    install(root, example_config)
    assert config.read_text() == "site: provisioned\n"


def test_updated_unit_is_rewritten(tmp_path: Path, example_config: Path) -> None:
    root = tmp_path / "root"
    install(root, example_config)
    unit = root / "etc/systemd/system/edge-agent.service"
    unit.write_text("stale\n")
    install(root, example_config)
    assert unit.read_bytes() == UNIT.read_bytes()


def test_dry_run_writes_nothing(tmp_path: Path, example_config: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    out = install(root, example_config, "--dry-run").stdout
    assert list(root.iterdir()) == []
    assert f"would write: {root}/etc/systemd/system/edge-agent.service" in out
    assert f"would write: {root}/etc/edge-agent/config.yaml" in out
    assert f"would run: install -d -m 0750 {root}/var/lib/edge-agent" in out
    assert "would run: systemctl enable edge-agent.service" in out
    assert not any(line.startswith(("+ ", "plan: ")) for line in out.splitlines())


def jetson_root(tmp_path: Path, l4t: str, cuda: str | None) -> Path:
    """A throwaway root that looks like a Jetson: its L4T release line and its CUDA's version.json."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text(f"# {l4t}, GCID: 38838911, BOARD: generic, EABI: aarch64\n")
    if cuda is not None:
        (root / "usr/local/cuda").mkdir(parents=True)
        (root / "usr/local/cuda/version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK", "version": cuda}}))
    return root


@pytest.mark.parametrize(
    ("l4t", "cuda", "cuda_python"),
    [
        ("R36 (release), REVISION: 4.3", "12.6.68", "cuda-python==12.6.*"),  # JetPack 6.2: Python 3.10
        ("R38 (release), REVISION: 2.0", "13.0.48", "cuda-python==13.0.*"),  # JetPack 7.0: Python 3.12
    ],
)
def test_jetson_venv_uses_jetpacks_python_tensorrt_and_cuda(tmp_path: Path, example_config: Path, l4t, cuda, cuda_python) -> None:
    out = install(jetson_root(tmp_path, l4t, cuda), example_config).stdout
    assert "platform: jetson" in out and f"CUDA {cuda[:4]}" in out
    assert "-m venv --system-site-packages /opt/edge-agent/venv" in out
    shell_quoted = cuda_python.replace("*", "\\*")  # as printf %q prints it
    assert f"/opt/edge-agent/venv/bin/python -m pip install --upgrade {REPO} {shell_quoted}" in out
    assert "mosquitto-clients gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-tools" in out
    # the steps it prints run as the service's user, who must be able to rewrite what they write
    assert "sudo -u edge-agent /opt/edge-agent/venv/bin/edge-agent selftest --config /etc/edge-agent/config.yaml" in out


@pytest.mark.parametrize(
    ("l4t", "cuda", "refusal"),
    [
        ("R35 (release), REVISION: 5.0", "11.4.315", "not supported: the agent needs JetPack 6.1 or later"),  # JetPack 5
        ("R36 (release), REVISION: 3.0", "12.2.140", "not supported: the agent needs JetPack 6.1 or later"),  # 6.0: TRT 8.6
        ("R36 (release), REVISION: 4.3", None, "no CUDA in"),
    ],
)
def test_jetson_without_tensorrt_10_is_refused_before_any_change(tmp_path: Path, example_config: Path, l4t, cuda, refusal) -> None:
    root = jetson_root(tmp_path, l4t, cuda)
    before = snapshot(root)
    result = install(root, example_config, check=False)
    assert result.returncode == 1 and refusal in result.stderr
    assert snapshot(root) == before


def test_requirements_leave_jetpacks_opencv_and_numpy_alone() -> None:
    """The installed metadata's markers: on a Tegra kernel no pip OpenCV (it would hide JetPack's
    GStreamer-enabled cv2) and numpy < 2 (JetPack's cv2 and TensorRT are built against numpy 1)."""
    requirements = [Requirement(r) for r in importlib.metadata.requires("edge-agent") or []]

    def wanted(release: str) -> dict[str, str]:
        env = {"platform_release": release, "extra": ""}
        return {r.name: str(r.specifier) for r in requirements if r.marker is None or r.marker.evaluate(env)}

    jetson, x86 = wanted("5.15.148-tegra"), wanted("6.8.0-45-generic")
    assert "opencv-python-headless" not in jetson and "<2" in jetson["numpy"]
    assert "opencv-python-headless" in x86 and "<2" not in x86["numpy"]


def test_missing_example_config_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    result = install(root, tmp_path / "absent.yaml", check=False)
    assert result.returncode == 1
    assert "missing example config" in result.stderr
    assert list(root.iterdir()) == []


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's INI dialect: repeated keys accumulate, so configparser (strict) will not do."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"not a unit line: {raw!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_has_the_required_settings() -> None:
    """Runs everywhere, with or without systemd: the keys the deployment relies on."""
    unit = parse_unit(UNIT.read_text())
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service | {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "RestartSec": "5",
        "User": "edge-agent",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ExecStart": "/opt/edge-agent/venv/bin/edge-agent run --config /etc/edge-agent/config.yaml",
    } == service
    assert "PrivateDevices" not in service  # it would hide the GPU
    assert set(service["ReadWritePaths"].split()) == {"/var/lib/edge-agent", "/var/log/edge-agent"}
    # what the agent writes on an installed box (its state, and the zones it rewrites on a zone-editor save or an
    # OTA zones commit) lies in a folder the unit lets it write: the config in /etc stays read-only to it
    example = yaml.safe_load((REPO / "deploy" / "config.example.yaml").read_text())
    for written in (example["state_dir"], example["zones_file"]):
        assert any(Path(written).is_relative_to(p) for p in service["ReadWritePaths"].split()), written
    assert set(service["SupplementaryGroups"].split()) == {"video", "render"}
    assert "EDGE_AGENT_STATE_DIR=/var/lib/edge-agent" in unit["Service"]["Environment"]
    devices = " ".join(unit["Service"]["DeviceAllow"])
    for node in ("char-nvidia*", "char-nvhost*", "/dev/nvhost-ctrl-gpu", "/dev/nvmap", "/dev/host1x-fence"):
        assert node in devices
    # Orin on JetPack 6: the GPU's own nodes live under /dev/nvgpu/igpu0/
    for node in ("ctrl", "as", "channel", "tsg", "power", "sched", "nvsched"):
        assert f"/dev/nvgpu/igpu0/{node} rw" in unit["Service"]["DeviceAllow"]
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= set(unit["Unit"])
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze in this container")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify refuses a missing ExecStart binary, and the venv does not exist here:
    # point ExecStart at a stub, keep every other line as shipped.
    stub = tmp_path / "edge-agent"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = tmp_path / "edge-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-agent/venv/bin/edge-agent", str(stub)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # Unknown keys and bad values are only warnings (exit 0): demand silence.
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_an_install_with_its_zones_in_etc_is_told_how_to_move_them(tmp_path: Path, example_config: Path) -> None:
    # a box installed before the zones moved into the state dir: its config is kept, so its zones stay where the
    # service cannot rewrite them; the install says so, with the commands, and adds no zones file it would not read
    root = tmp_path / "root"
    install(root, example_config)
    (root / "var/lib/edge-agent/zones.yaml").unlink()
    (root / "etc/edge-agent/config.yaml").write_text("site: provisioned\nzones_file: zones.yaml\n")
    (root / "etc/edge-agent/zones.yaml").write_text("version: 3\nzones: []\n")
    out = install(root, example_config).stdout
    assert "keeps its zones in /etc/edge-agent/zones.yaml, which the service cannot rewrite" in out
    assert "mv /etc/edge-agent/zones.yaml /var/lib/edge-agent/zones.yaml" in out
    assert not (root / "var/lib/edge-agent/zones.yaml").exists()
    fresh = install(tmp_path / "fresh", REPO / "deploy" / "config.example.yaml").stdout
    assert "note:" not in fresh  # the example keeps its zones in the state dir
