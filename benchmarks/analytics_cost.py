"""CPU of the analytics thread per frame (tracking, rules, event encoding), without the detector.

    python -m benchmarks.analytics_cost --rounds 7 --out benchmarks/results/analytics_cost.json

vtest.avi goes through the real pipeline (`replay: fast`, no frame dropped) with the zones every
camera of `streams_per_box` has (`agent_run.zones_for`: occupancy of the frame and its quadrants,
an intrusion zone, the plaza's wrong-way and loitering, a counting line), on the model's boxes of
every frame read back from a cache after the first round, so inference costs nothing. Per round:
the analytics thread's CPU time (`time.thread_time`) in `Pipeline._analyse`, per frame; reported
with min and median over the rounds and a digest of the events, which a change that only makes the
code faster must leave as it is. To compare two versions, run this from each in turn (A B A B).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from pathlib import Path
from unittest import mock

from agent.runtime.pipeline import Pipeline
from benchmarks import data
from benchmarks.agent_run import zones_for
from benchmarks.machine import describe
from benchmarks.report import print_table, write_result
from testbed.pipeline import run_clip


def measure(manifest: Path, cache: Path) -> tuple[float, int, str]:
    """One replay of the clip: analytics CPU ms per frame, events, and their digest."""
    spent = [0.0]
    analyse = Pipeline._analyse

    def timed(pipeline: Pipeline, *args) -> None:
        t0 = time.thread_time()
        analyse(pipeline, *args)
        spent[0] += time.thread_time() - t0

    with mock.patch.object(Pipeline, "_analyse", timed):
        run = run_clip(data.default_clip(), zones_for(["cam"]), data.models_dir(), manifest=manifest, cache_dir=cache)
    digest = hashlib.sha256(repr([(e.kind, e.body) for e in run.envelopes]).encode()).hexdigest()[:16]
    return 1e3 * spent[0] / run.frames, len(run.envelopes), digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=data.DEFAULT_MANIFEST, help="model manifest")
    parser.add_argument("--cache", type=Path, default=Path("var/detections"), help="folder of cached detections")
    parser.add_argument("--rounds", type=int, default=7, help="replays measured after the one that fills the cache")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args(argv)
    machine = describe(vars(args))
    measure(args.manifest, args.cache)  # fills the cache: inference is not what is measured
    rounds = [measure(args.manifest, args.cache) for _ in range(args.rounds)]
    ms = [round(r[0], 3) for r in rounds]
    digests = sorted({r[2] for r in rounds})
    print_table(
        f"analytics thread CPU per frame, vtest.avi, {args.manifest.stem} boxes ({rounds[0][1]} events)",
        ["min ms", "median ms", "max ms", "events digest"],
        [[min(ms), statistics.median(ms), max(ms), ", ".join(digests)]],
    )
    write_result(args.out, "analytics_cost", machine, {"ms_per_frame": ms, "events": rounds[0][1], "digests": digests})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
