"""What a result was measured on: CPU, flags, load, library versions, model hashes, settings."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from engines.manifest import load_manifest, resolve_model_file, sha256_of

REPO = Path(__file__).resolve().parents[1]
# The flags that decide which inference kernels run: VNNI is what makes INT8 pay off on x86.
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
LIBRARIES = ("edge-agent", "numpy", "onnxruntime", "opencv-python-headless", "paho-mqtt", "supervision", "tensorrt")


def cpu_info() -> dict:
    """Model name, logical cores and the inference-relevant flags from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {
        "model": fields.get("model name", platform.processor()),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "flags": {flag: flag in flags for flag in CPU_FLAGS},
    }


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision() -> dict[str, object]:
    """Commit of the checkout and whether it had uncommitted changes (figures of a dirty tree are provisional)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        return done.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def model_info(manifest_path: Path, models_dir: Path) -> dict:
    """Name, precision, file and SHA-256 of the model file actually on disk."""
    manifest = load_manifest(manifest_path)
    path = resolve_model_file(manifest, models_dir)
    return {
        "manifest": str(manifest_path),
        "name": manifest.name,
        "precision": manifest.precision,
        "input_wh": list(manifest.input.size_wh),
        "file": str(path),
        "sha256": sha256_of(path),
    }


def describe(settings: dict) -> dict:
    """The `machine` block of every result: host, CPU, load now, libraries, checkout, and the run's settings."""
    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu": cpu_info(),
        "load_average_1_5_15": list(os.getloadavg()),
        "libraries": library_versions(),
        "git": git_revision(),
        "command": sys.argv,
        "settings": settings,
    }


def which_machines(folder: Path) -> list[list[object]]:
    """Per result JSON in `folder`: the CPU flags that move inference figures, onnxruntime, commit, dirty, load."""
    import json

    rows: list[list[object]] = []
    for path in sorted(folder.glob("*.json")):
        try:
            machine = json.loads(path.read_text()).get("machine")
        except ValueError:
            rows.append([path.name, "not JSON", "-", "-", "-", "-", "-"])
            continue
        if not isinstance(machine, dict):
            rows.append([path.name, "-", "-", "-", "-", "-", "-"])
            continue
        flags, git = machine["cpu"]["flags"], machine.get("git", {})
        vector = "AVX-512 VNNI" if flags.get("avx512_vnni") else "AVX-512" if flags.get("avx512f") else "AVX2"
        rows.append([path.name, vector, machine["libraries"].get("onnxruntime"), (git.get("commit") or "-")[:8],
                     "dirty" if git.get("dirty") else "clean", machine["load_average_1_5_15"][0],
                     " ".join([Path(machine["command"][0]).stem, *machine["command"][1:]]) if "command" in machine else "-"])  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    from benchmarks.report import print_table

    parser = argparse.ArgumentParser(description="Which machine, library and checkout each result JSON comes from.")
    parser.add_argument("folder", type=Path, nargs="?", default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    print_table(f"results in {args.folder}", ["file", "CPU", "onnxruntime", "commit", "tree", "load at start", "command"],
                which_machines(args.folder))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
