"""streams_per_box's search over N (pure: a stand-in for the agent's run says which N a box holds), and
which machine each result file comes from."""

from __future__ import annotations

import json

import pytest

from benchmarks.streams_per_box import search


def holding(up_to: int, tried: list[int]):
    def run_at(n: int) -> dict:
        tried.append(n)
        fps = 10.0 if n <= up_to else 5.0
        return {"streams": n, "end_to_end_ms": {"p99": 50.0}, "frames": {"drop_fraction": 0.0, "camera_fps_min": fps, "camera_fps_nominal": 10.0}}

    return run_at


@pytest.mark.parametrize(("start", "max_streams", "box_holds", "expected_tries", "best"), [
    (1, 3, 100, [1, 2, 3], 3),  # --max-streams is tried even off the doubling (it was not: best 2)
    (1, 12, 10, [1, 2, 4, 8, 12, 10, 11], 10),  # the box holds 10 of at most 12: found, not 8
    (3, 16, 100, [3, 6, 12, 16], 16),
    (1, 16, 5, [1, 2, 4, 8, 6, 5], 5),
    (2, 4, 0, [2, 1], 0),  # nothing holds: below --start too
])  # fmt: skip
def test_the_search_reaches_max_streams_and_bisects(start, max_streams, box_holds, expected_tries, best):
    tried: list[int] = []
    runs, found = search(holding(box_holds, tried), start, max_streams, budget_ms=100, max_drop=0.01)
    assert (tried, found) == (expected_tries, best)
    assert [r["fails"] == [] for r in runs] == [n <= box_holds for n in sorted(tried)]


def test_each_result_file_says_which_machine_it_comes_from(tmp_path):
    from benchmarks.machine import describe, which_machines

    machine = describe({"clip": None}) | {"command": ["/x/benchmarks/foo.py", "--a", "1"]}
    (tmp_path / "a.json").write_text(json.dumps({"benchmark": "x", "machine": machine}))
    (tmp_path / "b.json").write_text(json.dumps({"metrics": {}}))  # an accuracy evaluation: no machine block
    (a, b) = which_machines(tmp_path)
    flags = machine["cpu"]["flags"]
    assert a[:3] == ["a.json", "AVX-512 VNNI" if flags["avx512_vnni"] else "AVX-512" if flags["avx512f"] else "AVX2",
                     machine["libraries"]["onnxruntime"]]
    assert a[-1] == "foo --a 1"
    assert b == ["b.json", "-", "-", "-", "-", "-", "-"]
    (tmp_path / "a.json").write_text('{"machine": ')  # cut short
    assert which_machines(tmp_path)[0] == ["a.json", "not JSON", "-", "-", "-", "-", "-"]


def test_a_run_whose_agent_dies_is_a_failed_run_and_the_search_goes_on():
    def run_at(n: int) -> dict:
        if n == 8:
            raise RuntimeError("agent exited with 1:\n...\nMemoryError: out of memory\n")
        return holding(100, [])(n)

    runs, best = search(run_at, 1, 8, budget_ms=100, max_drop=0.01)
    assert best == 7 and [r["streams"] for r in runs] == [1, 2, 4, 6, 7, 8]
    (died,) = [r for r in runs if "error" in r]
    assert died["fails"] == ["agent exited with 1: MemoryError: out of memory"]
