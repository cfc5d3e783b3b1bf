"""Percentile summaries, console tables and the JSON result file every script writes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

PERCENTILES = (50, 95, 99)


def summary_ms(samples_ms: Iterable[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max (ms) and the sample count; None figures when there is no sample."""
    a = np.asarray(list(samples_ms), dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p = np.percentile(a, PERCENTILES)
    return {"n": int(a.size)} | {f"p{q}": round(float(x), 3) for q, x in zip(PERCENTILES, p)} | {
        "max": round(float(a.max()), 3)
    }


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A fixed-width table on stdout; floats with 2 decimals, None as '-'."""

    def cell(value: object) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in body)) if body else len(c) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in body:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def write_result(out: Path, benchmark: str, machine: dict, results: dict) -> dict:
    """Write {benchmark, machine, results} to `out` (folders made) and return it. `machine` is
    `machine.describe(...)` taken when the run started; the load average is added again
    now, so a run on a busy box shows it."""
    machine = machine | {"load_average_at_end": list(os.getloadavg())}
    payload = {"benchmark": benchmark, "machine": machine, "results": results}
    write_json(out, payload)
    print(f"\nwrote {out}")
    return payload


def write_json(out: Path, payload: object) -> None:
    """`payload` as indented JSON at `out`, its folders made."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, default=str) + "\n")
