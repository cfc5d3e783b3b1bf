import sqlite3

from agent.outbox import Outbox


def rows(n, size=100, start=0):
    return [(f"e{i}", "t", bytes(size)) for i in range(start, start + n)]


def test_rows_leave_only_when_acked_and_survive_reopen(tmp_path):
    path = tmp_path / "o.sqlite"
    with Outbox(path, max_bytes=10**6, max_age_s=3600) as ob:
        ob.put(rows(3))
        pending = ob.pending(10, set())
        assert [r.event_id for r in pending] == ["e0", "e1", "e2"]
        ob.ack(pending[0].row_id)
        assert [r.event_id for r in ob.pending(10, {pending[1].row_id})] == ["e2"]
    with Outbox(path, max_bytes=10**6, max_age_s=3600) as ob:
        assert [r.event_id for r in ob.pending(10, set())] == ["e1", "e2"]
        assert ob.stats().depth == 2 and ob.stats().size_bytes == 200


def test_wal_and_full_sync(tmp_path):
    Outbox(tmp_path / "o.sqlite", 10**6, 3600).close()
    db = sqlite3.connect(tmp_path / "o.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_full_outbox_sheds_oldest_and_counts(tmp_path):
    with Outbox(tmp_path / "o.sqlite", max_bytes=2**16, max_age_s=3600) as ob:
        ob.put(rows(1000, size=100))  # 100 kB into a 64 kiB outbox
        s = ob.stats()
        assert s.size_bytes <= 2**16
        assert s.dropped == 1000 - s.depth
        assert ob.pending(1, set())[0].event_id == f"e{s.dropped}"  # the newest survive


def test_expired_rows_are_dropped_and_counted(tmp_path):
    now = [1000.0]
    with Outbox(tmp_path / "o.sqlite", max_bytes=10**6, max_age_s=60, clock_s=lambda: now[0]) as ob:
        ob.put(rows(5))
        now[0] += 61
        ob.put(rows(1, start=5))
        assert [r.event_id for r in ob.pending(10, set())] == ["e5"]
        assert ob.stats().dropped == 5


def test_listener_runs_after_put(tmp_path):
    calls = []
    with Outbox(tmp_path / "o.sqlite", 10**6, 3600) as ob:
        ob.add_listener(lambda: calls.append(1))
        ob.put(rows(2))
        ob.put([])
    assert calls == [1]
