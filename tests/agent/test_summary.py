"""The periodic log summary: rates from two snapshots, logged every interval."""

from __future__ import annotations

import time

from agent.io.summary import SummaryLoop, summary_fields


def _snapshot(frames: int, events: int, connected: bool = True, depth: int = 0) -> dict:
    return {
        "cameras": {"a": {"state": "online", "fps": 9.96}, "b": {"state": "offline", "fps": 0.0}},
        "frames": frames,
        "events": events,
        "broker": {"address": "127.0.0.1:1883", "connected": connected},
        "outbox": {"depth": depth, "oldest_age_s": 4.5 if depth else 0.0, "delivered": 40},
    }


def test_fields_from_two_snapshots() -> None:
    fields = summary_fields(_snapshot(100, 40), _snapshot(300, 52, connected=False, depth=12), 10.0)
    assert fields == {
        "cameras": {"a": "online 10.0 fps", "b": "offline 0.0 fps"},
        "detect_fps": 20.0,
        "events": 12,
        "events_total": 52,
        "delivered_total": 40,
        "outbox_depth": 12,
        "delivery_lag_s": 4.5,
        "broker": "127.0.0.1:1883 unreachable",
    }


def test_the_loop_logs_every_interval_and_survives_a_failing_snapshot(captured_logs: list[dict]) -> None:
    calls = iter([_snapshot(0, 0), RuntimeError("boom"), _snapshot(10, 1), _snapshot(20, 3)])

    def snapshot() -> dict:
        item = next(calls, None) or _snapshot(20, 3)
        if isinstance(item, Exception):
            raise item
        return item

    logs = captured_logs
    with SummaryLoop(snapshot, 0.05):
        deadline = time.monotonic() + 5
        while len([r for r in logs if r["event"] == "summary"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    summaries = [r for r in logs if r["event"] == "summary"]
    assert [r["events"] for r in summaries[:2]] == [1, 2] and summaries[0]["log_level"] == "info"
    assert any(r["event"] == "summary_failed" for r in logs)


def test_interval_zero_is_off(captured_logs: list[dict]) -> None:
    with SummaryLoop(lambda: _snapshot(0, 0), 0) as loop:
        time.sleep(0.1)
    assert captured_logs == [] and not loop._thread.is_alive()


def test_a_clock_never_set_is_warned_about_beside_every_summary(captured_logs: list[dict]) -> None:
    """A box that booted without real time: the clock says 1970 until NTP sets it."""
    wall = [3600.0]
    with SummaryLoop(lambda: _snapshot(0, 0), 0.05, clock_s=lambda: wall[0]):
        deadline = time.monotonic() + 5
        while len([r for r in captured_logs if r["event"] == "clock_not_set"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        wall[0] = 1_796_000_000.0  # NTP sets it
        time.sleep(0.2)
        seen = len(captured_logs)
        time.sleep(0.2)
    warnings = [r for r in captured_logs if r["event"] == "clock_not_set"]
    assert len(warnings) >= 2 and warnings[0]["log_level"] == "warning"
    assert warnings[0]["now"] == "1970-01-01 01:00:00 UTC" and "timedatectl set-ntp" in warnings[0]["hint"]
    assert not [r for r in captured_logs[seen:] if r["event"] == "clock_not_set"]  # set: no more
    assert [r for r in captured_logs[seen:] if r["event"] == "summary"]  # while the summaries go on
