"""The durable outbox: every event is written here before it is published and
leaves only once the broker acknowledged it.

SQLite in WAL mode with synchronous=FULL: a committed row survives a crash or a
power cut. Bounded by bytes and age; beyond either the oldest rows go first and
are counted (the count is persisted and reported on health).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import structlog

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Row:
    row_id: int
    event_id: str
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    size_bytes: int
    oldest_age_s: float
    dropped: int


class Outbox:
    """Thread-safe; `put` from the pipeline, `pending`/`ack` from the MQTT link."""

    def __init__(
        self, path: Path, max_bytes: int, max_age_s: float, clock_s: Callable[[], float] = time.time
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._max_bytes = max_bytes
        self._max_age_ms = int(max_age_s * 1000)
        self._clock_s = clock_s
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._size_bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, items: list[tuple[str, str, bytes]]) -> None:
        """Store (event_id, topic, payload) rows in one transaction, then shed beyond the bounds."""
        if not items:
            return
        now_ms = int(self._clock_s() * 1000)
        with self._lock:
            try:
                self._insert(items, now_ms)
            except sqlite3.OperationalError as e:
                if "full" not in str(e):
                    raise
                # disk full: make room from the oldest rows and try once more; if that
                # still fails the new events are the ones lost, and they are counted
                freed = self._shed_oldest(max(sum(len(p) for _, _, p in items), self._size_bytes // 10))
                log.warning("outbox_disk_full", shed_rows=freed)
                try:
                    self._insert(items, now_ms)
                except sqlite3.OperationalError:
                    self._count_dropped(len(items))
                    log.error("outbox_disk_full_dropped_new", dropped=len(items))
                    return
            self._enforce_bounds(now_ms)
        for listener in self._listeners:
            listener()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """`callback()` runs after every committed `put` (the MQTT link wakes its drain thread)."""
        self._listeners.append(callback)

    def pending(self, limit: int, exclude: set[int]) -> list[Row]:
        """Oldest rows first, skipping those already in flight."""
        with self._lock:
            cur = self._db.execute(
                "SELECT id, event_id, topic, payload FROM outbox ORDER BY id LIMIT ?", (limit + len(exclude),)
            )
            rows = [Row(*r) for r in cur if r[0] not in exclude]
        return rows[:limit]

    def ack(self, row_id: int) -> None:
        """The broker acknowledged the row: it leaves the outbox."""
        with self._lock:
            cur = self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload)", (row_id,))
            deleted = cur.fetchone()
            if deleted:
                self._size_bytes -= deleted[0]

    def stats(self) -> OutboxStats:
        with self._lock:
            depth, oldest = self._db.execute("SELECT COUNT(*), MIN(created_ms) FROM outbox").fetchone()
            dropped = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        age_s = 0.0 if oldest is None else max(0.0, self._clock_s() - oldest / 1000)
        return OutboxStats(depth, self._size_bytes, age_s, dropped[0] if dropped else 0)

    def _insert(self, items: list[tuple[str, str, bytes]], now_ms: int) -> None:
        with self._db:  # one transaction: all or nothing
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO outbox (event_id, topic, payload, created_ms) VALUES (?, ?, ?, ?)",
                [(eid, topic, payload, now_ms) for eid, topic, payload in items],
            )
        self._size_bytes += sum(len(p) for _, _, p in items)

    def _enforce_bounds(self, now_ms: int) -> None:
        cur = self._db.execute(
            "DELETE FROM outbox WHERE created_ms < ? RETURNING LENGTH(payload)", (now_ms - self._max_age_ms,)
        )
        expired = cur.fetchall()
        if expired:
            self._size_bytes -= sum(n for (n,) in expired)
            self._count_dropped(len(expired))
        if self._size_bytes > self._max_bytes:
            self._shed_oldest(self._size_bytes - self._max_bytes)

    def _shed_oldest(self, nbytes: int) -> int:
        """Delete the oldest rows until at least `nbytes` are freed; count them as dropped."""
        freed = 0
        shed = 0
        for row_id, size in self._db.execute("SELECT id, LENGTH(payload) FROM outbox ORDER BY id").fetchall():
            if freed >= nbytes:
                break
            freed += size
            shed += 1
            last = row_id
        if shed:
            self._db.execute("DELETE FROM outbox WHERE id <= ?", (last,))
            self._size_bytes -= freed
            self._count_dropped(shed)
        return shed

    def _count_dropped(self, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES ('dropped', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (n,),
        )
