"""Canonical JSON: the one byte form that manifests are signed in.

Sorted keys, no whitespace, UTF-8, no NaN/Infinity. Parsing is strict as well:
duplicate keys are refused, because two parsers that keep a different
duplicate would read different meanings out of the same signed bytes.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json_bytes(value: Any) -> bytes:
    """Serialise a JSON value canonically.

    Raises ValueError if it holds NaN/Infinity, text that UTF-8 cannot encode
    (lone surrogates) or nesting too deep to serialise.
    """
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    return text.encode("utf-8")


def parse_json_strict(raw: bytes) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys, NaN/Infinity and nesting too deep to parse.

    Raises ValueError for every kind of bad input (json's own errors, bad UTF-8
    and RecursionError on deep nesting are all folded into it), so callers have
    one exception to map.
    """
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        keys = [k for k, _ in pairs]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate JSON keys {duplicates}")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")
