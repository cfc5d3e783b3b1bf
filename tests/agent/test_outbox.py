"""The durable outbox: acks, bounds, cursor paging, and a really full disk."""

from __future__ import annotations

import contextlib
import os
import sqlite3

import pytest

from agent.io.ledger import LossLedger
from agent.io.outbox import LOW_DISK_BYTES, Outbox, OutboxDamaged
from agent.io.state_lock import StateDirUnavailable
from agent.runtime.app import open_outbox
from agent.settings.config import OutboxSettings


def rows(n, size=100, start=0):
    return [(f"e{i}", "t", bytes(size)) for i in range(start, start + n)]


def test_rows_leave_only_when_acked_and_survive_reopen(tmp_path):
    path = tmp_path / "o.sqlite"
    with Outbox(path, max_bytes=10**6, max_age_s=3600) as ob:
        ob.put(rows(3))
        pending = ob.pending(10)
        assert [r.event_id for r in pending] == ["e0", "e1", "e2"]
        ob.ack([pending[0].row_id])
        assert [r.event_id for r in ob.pending(10, after_id=pending[1].row_id)] == ["e2"]
    with Outbox(path, max_bytes=10**6, max_age_s=3600) as ob:
        assert [r.event_id for r in ob.pending(10)] == ["e1", "e2"]
        assert ob.stats().depth == 2 and ob.stats().size_bytes == 200


def test_the_cursor_pages_through_a_backlog_and_acks_go_in_batches(tmp_path):
    with Outbox(tmp_path / "o.sqlite", max_bytes=10**8, max_age_s=3600) as ob:
        ob.put(rows(1000))
        seen, after = [], 0
        while page := ob.pending(64, after):
            seen += page
            after = page[-1].row_id
        assert [r.event_id for r in seen] == [f"e{i}" for i in range(1000)]
        ob.ack([r.row_id for r in seen[:900]] + [10**9])  # an unknown id (shed meanwhile) is ignored
        assert ob.stats().depth == 100 and ob.stats().size_bytes == 100 * 100
        assert ob.pending(1)[0].event_id == "e900"


def test_the_same_bytes_are_returned_until_acked(tmp_path):
    """A retry publishes the stored payload: same event_id, same bytes, whatever happened meanwhile."""
    path = tmp_path / "o.sqlite"
    payload = b'{"event_id":"box:0011223344556677:1"}'
    with Outbox(path, 10**6, 3600) as ob:
        ob.put([("box:0011223344556677:1", "edge/v1/s/box/events/intrusion", payload)])
        first = ob.pending(1)[0]
    with Outbox(path, 10**6, 3600) as ob:
        again = ob.pending(1)[0]
    assert again == first and again.payload == payload


def test_wal_and_full_sync(tmp_path):
    Outbox(tmp_path / "o.sqlite", 10**6, 3600).close()
    db = sqlite3.connect(tmp_path / "o.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
    with Outbox(tmp_path / "o.sqlite", 10**6, 3600) as ob:  # synchronous is per connection: the outbox's own
        assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_full_outbox_sheds_oldest_and_counts_and_the_count_survives_reopen(tmp_path):
    with Outbox(tmp_path / "o.sqlite", max_bytes=2**16, max_age_s=3600) as ob:
        ob.put(rows(1000, size=100))  # 100 kB into a 64 kiB outbox
        s = ob.stats()
        assert s.size_bytes <= 2**16
        assert s.dropped == 1000 - s.depth
        assert ob.pending(1)[0].event_id == f"e{s.dropped}"  # the newest survive
    with Outbox(tmp_path / "o.sqlite", max_bytes=2**16, max_age_s=3600) as ob:
        assert ob.stats().dropped == s.dropped and ob.stats().depth == s.depth


class Clocks:
    """A wall clock and the time since boot: `wait` moves both, `set_wall` steps the wall clock alone."""

    def __init__(self, wall_s: float) -> None:
        self.wall_s, self.boot_s = wall_s, 100.0

    def wait(self, s: float) -> None:
        self.wall_s += s
        self.boot_s += s

    def set_wall(self, wall_s: float) -> None:
        self.wall_s = wall_s

    def outbox(self, path, max_age_s: float) -> Outbox:
        return Outbox(path, 10**6, max_age_s, clock_s=lambda: self.wall_s, elapsed_s=lambda: self.boot_s)


def test_expired_rows_are_dropped_and_counted(tmp_path):
    clocks = Clocks(1000.0)
    with clocks.outbox(tmp_path / "o.sqlite", max_age_s=60) as ob:
        ob.put(rows(5))
        clocks.wait(30)
        ob.put(rows(2, start=5))
        clocks.wait(31)
        ob.put(rows(1, start=7))
        assert [r.event_id for r in ob.pending(10)] == ["e5", "e6", "e7"]
        assert ob.stats().dropped == 5 and ob.stats().oldest_age_s == pytest.approx(31)


def test_events_queued_before_the_clock_is_set_keep_their_age(tmp_path, captured_logs):
    """A box that booted offline without real time (1970) queues events; NTP then sets the clock 56 years
    on. Those events are minutes old, not 56 years: none is shed as expired, and they still expire on time."""
    clocks = Clocks(3600.0)  # 1970-01-01 01:00
    with clocks.outbox(tmp_path / "o.sqlite", max_age_s=600) as ob:
        ob.put(rows(3))
        clocks.wait(120)
        clocks.set_wall(1_796_000_000.0)  # 2026: the clock is set
        ob.put(rows(1, start=3))
        assert [r.event_id for r in ob.pending(10)] == ["e0", "e1", "e2", "e3"]
        assert ob.stats().dropped == 0 and ob.stats().oldest_age_s == pytest.approx(120)
        step = next(r for r in captured_logs if r["event"] == "outbox_clock_stepped")
        assert step["log_level"] == "warning" and step["rows"] == 3 and step["step_s"] == 1_796_000_000 - 3720
        clocks.wait(481)  # 601 s after the first three were queued
        ob.put(rows(1, start=4))
        assert [r.event_id for r in ob.pending(10)] == ["e3", "e4"] and ob.stats().dropped == 3


def test_a_clock_set_back_does_not_keep_events_past_their_age(tmp_path):
    clocks = Clocks(1_796_000_000.0)
    with clocks.outbox(tmp_path / "o.sqlite", max_age_s=600) as ob:
        ob.put(rows(2))
        clocks.set_wall(1_795_000_000.0)  # a million seconds back
        clocks.wait(601)
        ob.put(rows(1, start=2))
        assert [r.event_id for r in ob.pending(10)] == ["e2"] and ob.stats().dropped == 2


def test_listener_runs_after_put(tmp_path):
    calls = []
    with Outbox(tmp_path / "o.sqlite", 10**6, 3600) as ob:
        ob.add_listener(lambda: calls.append(1))
        ob.put(rows(2))
        ob.put([])
    assert calls == [1]


def test_a_full_disk_sheds_the_oldest_counts_them_and_never_raises(small_disk):
    """The outbox's byte bound is far above the disk: the disk is what fills."""
    with Outbox(small_disk / "o.sqlite", max_bytes=2**30, max_age_s=3600) as ob:
        for i in range(6000):  # 18 MB of payload onto a 16 MiB disk
            ob.put(rows(10, size=300, start=10 * i))
        s = ob.stats()
        assert s.dropped > 0 and s.depth + s.dropped == 60000
        assert ob.pending(1)[0].event_id == f"e{s.dropped}"  # what was shed is the oldest
        ob.ack([r.row_id for r in ob.pending(100)])  # acks still work on the full disk
        assert ob.stats().depth == s.depth - 100
    free = os.statvfs(small_disk)
    assert free.f_bavail * free.f_frsize > LOW_DISK_BYTES / 2  # it stopped short of really full
    with Outbox(small_disk / "o.sqlite", max_bytes=2**30, max_age_s=3600) as ob:
        assert ob.stats().dropped == s.dropped


def test_a_disk_filled_by_someone_else_costs_the_new_events_not_a_crash(small_disk, captured_logs):
    ledger = LossLedger(small_disk / "losses.json")
    with Outbox(small_disk / "o.sqlite", max_bytes=2**30, max_age_s=3600, ledger=ledger) as ob:
        ob.put(rows(100))
        with open(small_disk / "hog", "wb") as hog:  # another process takes every last byte
            try:
                while True:
                    hog.write(bytes(65536))
                    hog.flush()
            except OSError:
                pass
        for i in range(50):
            ob.put(rows(10, size=300, start=100 + 10 * i))
        s = ob.stats()
    assert s.depth + s.dropped + s.lost == 600 and s.dropped + s.lost > 0
    # said, not shouted: each kind of failure once in these few seconds, with how often it happened since
    said = [r["event"] for r in captured_logs if r["event"].startswith(("outbox_", "loss_ledger_"))]
    assert said and len(said) == len(set(said)), said
    # the disk still full: the count of lost events survives a restart
    assert LossLedger(small_disk / "losses.json").events_lost == s.lost


def test_a_start_on_a_full_disk_is_refused_saying_so_and_leaves_nothing_half_made(small_disk):
    ledger = LossLedger(small_disk / "losses.json")
    with open_outbox(small_disk / "kept.sqlite", OutboxSettings(), ledger, lambda *_a, **_k: True) as kept:
        kept.put(rows(5))
    with open(small_disk / "hog", "wb", buffering=0) as hog:  # another process takes every last byte
        with contextlib.suppress(OSError):
            while hog.write(bytes(65536)):
                pass
    with pytest.raises(StateDirUnavailable) as refused:
        open_outbox(small_disk / "new.sqlite", OutboxSettings(), ledger, lambda *_a, **_k: True)
    assert str(refused.value).startswith(f"state_dir {small_disk}: the outbox new.sqlite cannot be made: its filesystem is full")
    assert "free space there" in str(refused.value)
    assert not list(small_disk.glob("new.sqlite*"))  # nothing left behind
    # one closed while there was room needs room for its WAL index to open again: refused too, kept as it was
    with pytest.raises(StateDirUnavailable, match="the outbox kept.sqlite cannot be opened: its filesystem is full"):
        open_outbox(small_disk / "kept.sqlite", OutboxSettings(), ledger, lambda *_a, **_k: True)
    (small_disk / "hog").unlink()
    with open_outbox(small_disk / "kept.sqlite", OutboxSettings(), ledger, lambda *_a, **_k: True) as kept:
        assert kept.stats().depth == 5


def _damage_pages(path, rows_in=300):
    """A real outbox whose row pages were overwritten, as storage that lied about its writes leaves it."""
    with Outbox(path, max_bytes=10**8, max_age_s=3600) as ob:
        ob.put(rows(rows_in, size=500))
    page = 4096
    with open(path, "r+b") as f:
        for n in range(2, os.path.getsize(path) // page, 3):
            f.seek(n * page + 100)
            f.write(bytes(range(256)) * 4)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.write_bytes(b"half a header, not a database" * 200), "not a database"),
        (_damage_pages, "malformed"),
    ],
    ids=["not a database", "damaged pages"],
)
def test_a_damaged_file_is_told_apart_at_open(tmp_path, damage, message):
    path = tmp_path / "o.sqlite"
    damage(path)
    with pytest.raises(OutboxDamaged, match=message):
        Outbox(path, max_bytes=10**6, max_age_s=3600)


def test_a_file_that_cannot_be_opened_is_not_called_damaged(tmp_path):
    (tmp_path / "o.sqlite").mkdir()  # a folder in its place: say so, never set it aside as damaged
    with pytest.raises(sqlite3.OperationalError):
        Outbox(tmp_path / "o.sqlite", max_bytes=10**6, max_age_s=3600)
