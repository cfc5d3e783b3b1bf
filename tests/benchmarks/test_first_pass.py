"""streams_per_box's counts read back per camera: over the clip's first pass only (pure, no agent)."""

from __future__ import annotations

from benchmarks.agent_run import first_pass


def _env(camera: str, ts: int, body: dict) -> dict:
    return {"camera_id": camera, "ts": ts, "body": body}


def _line(count_in: int, count_out: int) -> dict:
    return {"kind": "line_count", "count_in": count_in, "count_out": count_out}


def test_counts_stop_where_a_cameras_pts_go_back_and_other_cameras_go_on():
    started = {"kind": "wrong_way", "state": "started"}
    envelopes = [
        _env("a", 100, _line(1, 0)), _env("b", 100, _line(0, 1)), _env("a", 200, started),
        _env("a", 200, {"kind": "wrong_way", "state": "ended"}), _env("a", 300, _line(2, 1)),
        _env("a", 50, _line(3, 1)),  # a looped: this and all its later events are the second pass
        _env("a", 400, {"kind": "loitering", "state": "started"}), _env("b", 500, _line(1, 1)),
    ]  # fmt: skip
    assert first_pass(envelopes) == {
        "a": {"line_in": 2, "line_out": 1, "wrong_way": 1, "loitering": 0},
        "b": {"line_in": 1, "line_out": 1, "wrong_way": 0, "loitering": 0},
    }
