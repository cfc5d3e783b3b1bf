"""The architecture, checked: what each layer pulls in, the one-way layer rule, and no import cycles.

Layers of agent/, each importing only those before it (README, Architecture):
core <- analytics <- settings <- wire <- io <- ota <- runtime <- tools.
engines/ sits below them all (it imports nothing of agent/, fleet/ or calibration/); calibration/
uses engines/ only (and the on-box commands use it); fleet/ (the operator's side) may use the
formats, and nothing in agent/ imports fleet/.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "engines", "calibration", "fleet")
LAYERS = ("core", "analytics", "settings", "wire", "io", "ota", "runtime", "tools")
TOOLS = LAYERS.index("tools")
HEAVY = ("cv2", "paho", "onnxruntime")
# Modules of agent/ that fleet/ may import: the formats both sides share, and the device's key
# and CSR code (agent/tools/identity.py), which the fleet's CA signs.
FLEET_MAY_IMPORT = ("agent.core", "agent.settings", "agent.wire", "agent.ota", "agent.tools.identity")
# The one import of fleet/ from agent/: provision's optional bench signing with the device CA at hand,
# imported where used so that the box never loads it.
AGENT_TO_FLEET = {("agent.tools.provision", "fleet.pki")}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The modules of this repository that `name` imports, anywhere in its body (lazy imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    resolved = set()
    for target in targets:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if parts[0] == "agent" and len(parts) > 1 and parts[1] in LAYERS else None


def _pulled_in(modules: list[str]) -> dict[str, list[str]]:
    """Import `modules` one after another in a fresh interpreter: module -> the HEAVY packages it loaded first."""
    script = (
        "import importlib, json, sys\n"
        f"heavy, seen, out = {HEAVY!r}, set(), {{}}\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "    new = [h for h in heavy if h in sys.modules and h not in seen]\n"
        "    seen.update(new)\n"
        "    if new: out[m] = new\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _of(prefix: str, but: str = "!") -> list[str]:
    return [m for m in MODULES if (m == prefix or m.startswith(prefix + ".")) and not m.startswith(but)]


@pytest.mark.parametrize(
    ("modules", "allowed"),
    [
        (_of("agent.core"), ()),
        (_of("agent.analytics", but="agent.analytics.analyzers"), ()),
        (_of("agent.analytics.analyzers"), ("cv2",)),  # the frame-level analyzers work on pixels
        (_of("agent.settings"), ()),
        (_of("agent.wire"), ()),
    ],
    ids=["core", "analytics", "analyzers", "settings", "wire"],
)
def test_a_layer_imported_alone_pulls_in_no_opencv_paho_or_onnxruntime(modules: list[str], allowed: tuple) -> None:
    assert modules
    pulled = {m: [h for h in heavy if h not in allowed] for m, heavy in _pulled_in(modules).items()}
    assert not {m: h for m, h in pulled.items() if h}, "these modules load what their layer must not"


def test_every_module_of_agent_sits_in_a_layer() -> None:
    stray = [m for m in MODULES if m.startswith("agent.") and _layer(m) is None]
    assert stray == [], f"put these under one of agent/{{{','.join(LAYERS)}}}"


def test_dependencies_point_one_way() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        top = module.split(".")[0]
        for target in sorted(targets):
            to = target.split(".")[0]
            if top == "agent" and to == "agent":  # the root package (the version) is below every layer
                ok = target == "agent" or module == "agent" or _layer(target) <= _layer(module)
            elif top == "agent":  # the on-box commands include `edge-agent calibrate`
                ok = to == "engines" or (to, _layer(module)) == ("calibration", TOOLS) or (module, target) in AGENT_TO_FLEET
            elif top == "engines":
                ok = to == "engines"
            elif top == "calibration":
                ok = to in ("calibration", "engines")
            else:  # fleet
                ok = to in ("fleet", "engines") or target.startswith(FLEET_MAY_IMPORT)
            if not ok:
                wrong.append(f"{module} -> {target}")
    assert wrong == [], "imports against the layer rule"


def test_no_import_cycles() -> None:
    """Strongly connected components of the module graph (Tarjan): every one a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_checks_can_fail() -> None:
    """The graph sees lazy and relative imports, and the layer lookup knows every layer."""
    assert "fleet.pki" in GRAPH["agent.tools.provision"]  # imported inside a function
    assert [_layer(f"agent.{layer}.x") for layer in LAYERS] == list(range(len(LAYERS)))
