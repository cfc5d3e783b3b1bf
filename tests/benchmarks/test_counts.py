"""streams_per_box's counts read back per camera from the events of a run (pure, no agent)."""

from __future__ import annotations

from benchmarks.agent_run import counts


def _env(camera: str, ts: int, body: dict) -> dict:
    return {"camera_id": camera, "ts": ts, "body": body}


def _line(count_in: int, count_out: int) -> dict:
    return {"kind": "line_count", "count_in": count_in, "count_out": count_out}


def test_the_last_line_count_and_the_situations_started_per_camera():
    envelopes = [
        _env("a", 100, _line(1, 0)), _env("b", 100, _line(0, 1)),
        _env("a", 200, {"kind": "wrong_way", "state": "started"}),
        _env("a", 300, {"kind": "wrong_way", "state": "ended"}), _env("a", 300, _line(2, 1)),
        _env("a", 400, {"kind": "loitering", "state": "started"}), _env("b", 500, _line(1, 1)),
        _env("b", 600, {"kind": "zone_occupancy", "count": 3}),  # not a figure read back
    ]  # fmt: skip
    assert counts(envelopes) == {
        "a": {"line_in": 2, "line_out": 1, "wrong_way": 1, "loitering": 1},
        "b": {"line_in": 1, "line_out": 1, "wrong_way": 0, "loitering": 0},
    }
