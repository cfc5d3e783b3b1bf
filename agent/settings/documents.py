"""Documents an operator writes by hand (a trust file, an OTA manifest): JSON if the name ends in .json,
YAML otherwise, each problem said on one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from agent.settings.errors import describe_yaml_error


def read_document(path: Path) -> Any:
    """The parsed document at `path`; ValueError with why it cannot be read (no path in the text: the caller
    names the file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from exc
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {describe_yaml_error(exc)}") from exc
