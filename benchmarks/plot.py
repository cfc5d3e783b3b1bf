"""PNG figures (matplotlib, Agg): end-to-end latency percentiles against stream count, and the
per-stage breakdown."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from benchmarks.agent_run import STAGES  # noqa: E402

PERCENTILE_STYLES = {"p50": ":", "p95": "--", "p99": "-"}


def latency_figure(series: dict[str, list[dict]], out: Path, budget_ms: float | None = None) -> Path:
    """series: label -> runs (from agent_run.run_agent). Left: end-to-end p50/p95/p99 (ms) against
    streams; right: p50 per stage for each run, stacked. Writes `out` (PNG) and returns it."""
    fig, (curve, stages) = plt.subplots(1, 2, figsize=(13, 5.5))
    for i, (label, runs) in enumerate(series.items()):
        runs = sorted(runs, key=lambda r: r["streams"])
        streams = [r["streams"] for r in runs]
        for p, style in PERCENTILE_STYLES.items():
            values = [r["end_to_end_ms"][p] for r in runs]
            curve.plot(streams, values, style, marker="o", color=f"C{i}", label=f"{label} {p}")
    if budget_ms is not None:
        curve.axhline(budget_ms, color="red", linewidth=1, label=f"budget {budget_ms:g} ms")
    curve.set(xlabel="streams", ylabel="frame to event (ms)", title="End to end, frame pts to subscriber")
    curve.xaxis.set_major_locator(MaxNLocator(integer=True))
    curve.legend(fontsize=7)
    curve.grid(alpha=0.3)

    bars = [(f"{label}, {r['streams']} str", r["stages_ms"]) for label, runs in series.items() for r in runs]
    labels, bottoms = [name for name, _ in bars], [0.0] * len(bars)
    for j, stage in enumerate(STAGES):
        heights = [(st.get(stage) or {}).get("p50") or 0.0 for _, st in bars]
        stages.bar(labels, heights, bottom=bottoms, color=f"C{j}", label=stage)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    stages.set(ylabel="p50 (ms)", title="Stage p50 (decode, tracking, rules per frame; others per batch)")
    stages.tick_params(axis="x", labelsize=7, labelrotation=60)
    for tick in stages.get_xticklabels():
        tick.set_horizontalalignment("right")
    stages.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
