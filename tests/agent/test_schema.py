"""`edge-agent schema` writes the JSON Schema of every message, and the README's OTA manifest example is one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from agent.ota.manifest import Manifest
from agent.tools.cli import EXIT_OK, main
from agent.tools.schema import SCHEMAS
from fleet.publish import check_payload

README = Path(__file__).resolve().parents[2] / "README.md"


def test_schema_writes_one_file_per_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == EXIT_OK
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"{name}.schema.json" for name in SCHEMAS)
    assert sorted(capsys.readouterr().out.split()) == [str(tmp_path / name) for name in written]  # each path said
    body = json.loads((tmp_path / "ota_manifest_body.schema.json").read_text())
    assert {"target", "version", "issued_at", "expires", "min_agent_version", "payload"} <= set(body["required"])
    written_schemas = [json.loads(p.read_text()) for p in sorted(tmp_path.iterdir())]
    assert len({s["$id"] for s in written_schemas}) == len(SCHEMAS)
    # every message naming its schema must name it (the agent always does; a default would let a message lack it)
    named = [s for s in written_schemas if "schema" in s["properties"]]
    assert len(named) == 5 and all("schema" in s["required"] for s in named)


def test_the_readme_manifest_example_is_a_manifest_sign_accepts() -> None:
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S) if "payload:" in b]
    manifest = Manifest.model_validate(yaml.safe_load(block))
    check_payload(manifest)  # what `edge-fleet ota sign` checks besides the expiry
    assert manifest.kind == "zones" and manifest.payload.zones["zones"][0]["camera"] == "plaza"
