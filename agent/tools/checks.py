"""The pass/fail report of `edge-agent doctor` and `edge-agent selftest`: its lines and how it is printed."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the report; `hint` says what to do when `ok` is False."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


def format_table(results: list[CheckResult]) -> str:
    width = max(len(r.name) for r in results)
    lines = []
    for r in results:
        lines.append(f"{'PASS' if r.ok else 'FAIL'}  {r.name:<{width}}  {r.detail}")
        if not r.ok and r.hint:
            lines.append(f"{'':6}{'':<{width}}  fix: {r.hint}")
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed}/{len(results)} checks passed" + ("" if not failed else f", {failed} failed"))
    return "\n".join(lines)


def print_report(results: list[CheckResult], as_json: bool) -> int:
    """Print the table (or one JSON object); 0 when every check passes, 1 otherwise."""
    ok = all(r.ok for r in results)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [asdict(r) for r in results]}, indent=2))
    else:
        print(format_table(results))
    sys.stdout.flush()
    return 0 if ok else 1
