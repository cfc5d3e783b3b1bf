"""Validation errors as text, for the messages that name a bad file or message."""

from __future__ import annotations

import yaml
from pydantic import ValidationError


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every bad field by its dotted path, for error messages and logs."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """Where a YAML text breaks and how, on one line: `line 3, column 2: expected ',' or ']', but got ':'
    (while parsing a flow sequence)` (PyYAML's own text names "<unicode string>" and spans several lines)."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")
