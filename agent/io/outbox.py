"""The durable outbox: every event is written here before it is published and
leaves only once the broker acknowledged it.

SQLite in WAL mode with synchronous=FULL: a committed row survives a crash or a
power cut. Bounded by bytes and age; beyond either the oldest rows go first and
are counted (the count is persisted and reported on health).

Every operation costs O(log n + rows touched), never O(backlog): rows are read
in id order from a cursor (`pending(after_id=...)`), depth and size are kept in
memory, shedding walks the oldest rows lazily, and acks are deleted in batches
(one fsync per batch instead of one per message). The one exception: a step of
the wall clock (the clock being set) moves every stored row's time, in one
UPDATE, once per step.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

import structlog

from agent.io.ledger import LossLedger
from agent.io.logs import Sparse
from agent.io.state_lock import FULL_DISK_ADVICE, StateDirUnavailable

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
# A small WAL, checkpointed often and then reused in place, so the disk space
# the outbox needs beyond its rows stays small and known.
_WAL_CHECKPOINT_PAGES = 128
_WAL_LIMIT_BYTES = 2**20
# Below this much free disk the outbox stops growing its file: it sheds its
# oldest rows and reuses their pages instead. Hitting a truly full disk is worse
# than shedding early: then even a DELETE (a WAL write) or a checkpoint (which
# may extend the database file) can fail.
LOW_DISK_BYTES = 2 * _WAL_LIMIT_BYTES


# A step of the wall clock against the time since boot bigger than this is the clock being set, not
# NTP's slewing (at most 0.5 ms a second) between two looks.
CLOCK_STEP_MS = 1000


def _boot_time_s() -> float:
    """Seconds since boot, counting suspend, never stepped."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _disk_full(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _damaged(error: sqlite3.DatabaseError) -> bool:
    """The file is not a database, or its pages are damaged (a power cut on storage that lied about
    its writes); not a full disk or a locked file, which say nothing about the file."""
    return getattr(error, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class OutboxDamaged(Exception):
    """The outbox file cannot be read as a database at open; the message is SQLite's."""


EventRow = tuple[str, str, bytes]
"""(event_id, topic, payload): an event as the pipeline hands it on and the outbox stores it."""


class EventSink(Protocol):
    """Where the pipeline's events go: the outbox, or a sink in front of it."""

    def put(self, items: list[EventRow]) -> None: ...


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
    lost: int  # events never stored: the disk was full even after shedding (counted in the LossLedger)


def _refuse_full_disk(path: Path, existed: bool, free: int) -> NoReturn:
    """A start on a full disk (SQLite says "full" or "disk I/O error": no room for its WAL index). An outbox
    open when the disk fills runs on through it; one that cannot be opened has nowhere to keep events. One
    this start made is removed: nothing is left half made."""
    if not existed:
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
    raise StateDirUnavailable(
        f"state_dir {path.parent}: the outbox {path.name} cannot be {'opened' if existed else 'made'}: its "
        f"filesystem is full ({free} bytes free): {FULL_DISK_ADVICE}"
    )


class Outbox:
    """Thread-safe; `put` from the pipeline, `pending`/`ack` from the MQTT link."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        max_age_s: float,
        clock_s: Callable[[], float] = time.time,
        ledger: LossLedger | None = None,
        elapsed_s: Callable[[], float] = _boot_time_s,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._ledger = ledger if ledger is not None else LossLedger(None)
        self._sparse = Sparse(log)  # a full disk fails every write: said every few seconds, not each time
        existed = path.exists()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
            self._db.executescript(_SCHEMA)
            # one scan at open, which reads every row (damage shows here); from then on depth and size
            # are kept up to date in memory
            self._depth, self._size_bytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
            ).fetchone()
            saved = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        except sqlite3.DatabaseError as e:
            self._db.close()
            if _damaged(e):
                raise OutboxDamaged(str(e)) from e
            disk = os.statvfs(path.parent)
            if (free := disk.f_bavail * disk.f_frsize) < LOW_DISK_BYTES:
                _refuse_full_disk(path, existed, free)
            raise
        self._max_bytes = max_bytes
        self._max_age_ms = int(max_age_s * 1000)
        self._clock_s, self._elapsed_s = clock_s, elapsed_s
        self._clock_offset_s = clock_s() - elapsed_s()  # wall clock minus time since boot, at the last look
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._dropped = self._dropped_saved = saved[0] if saved else 0
        self._dir = path.parent
        self._page_bytes = self._db.execute("PRAGMA page_size").fetchone()[0]

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """`callback()` runs after every committed `put` (the MQTT link wakes its drain thread)."""
        self._listeners.append(callback)

    def put(self, items: list[EventRow]) -> None:
        """Store (event_id, topic, payload) rows in one transaction, then shed beyond the bounds."""
        if not items:
            return
        nbytes = sum(len(p) for _, _, p in items)
        with self._lock:
            now_ms = self._now_ms()
            self._keep_disk_free(nbytes)
            try:
                self._insert(items, now_ms, nbytes)
            except sqlite3.OperationalError as e:
                if not _disk_full(e):
                    raise
                self._make_room_and_retry(items, now_ms, nbytes)
            self._enforce_bounds(now_ms)
        for listener in self._listeners:
            listener()

    def pending(self, limit: int, after_id: int = 0) -> list[Row]:
        """Up to `limit` rows with id > `after_id`, oldest first (the caller's cursor)."""
        with self._lock:
            cur = self._db.execute(
                "SELECT id, event_id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            )
            return [Row(*r) for r in cur]

    def ack(self, row_ids: Iterable[int]) -> None:
        """The broker acknowledged these rows: they leave the outbox, in one transaction."""
        ids = [(i,) for i in row_ids]
        if not ids:
            return
        with self._lock:
            sizes = []
            with self._db:
                self._db.execute("BEGIN")
                for params in ids:  # rows shed meanwhile are simply absent
                    sizes.extend(self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload)", params))
                self._save_dropped(0)
            self._dropped_saved = self._dropped
            self._depth -= len(sizes)
            self._size_bytes -= sum(n for (n,) in sizes)

    def stats(self) -> OutboxStats:
        with self._lock:
            now_ms = self._now_ms()
            oldest = self._db.execute("SELECT created_ms FROM outbox ORDER BY id LIMIT 1").fetchone()
            depth, size, dropped = self._depth, self._size_bytes, self._dropped
        age_s = 0.0 if oldest is None else max(0.0, (now_ms - oldest[0]) / 1000)
        return OutboxStats(depth, size, age_s, dropped, self._ledger.events_lost)

    # --- under the lock ---

    def _now_ms(self) -> int:
        """The wall clock, in ms. When it stepped since the last look (NTP setting a box that booted without
        real time, often years back), the stored rows' times move by the same step, so their ages stay true:
        the events queued while the box was offline are not shed as years old the moment the clock is set.
        The events keep the time they were stamped with."""
        wall = self._clock_s()
        offset = wall - self._elapsed_s()
        step_ms = round((offset - self._clock_offset_s) * 1000)
        self._clock_offset_s = offset
        if abs(step_ms) > CLOCK_STEP_MS and self._depth:
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.execute("UPDATE outbox SET created_ms = created_ms + ?", (step_ms,))
                log.warning("outbox_clock_stepped", step_s=step_ms / 1000, rows=self._depth)
            except sqlite3.OperationalError as e:
                if not _disk_full(e):
                    raise
                self._sparse("error", "outbox_clock_step_unapplied_disk_full", step_s=step_ms / 1000, rows=self._depth)
        return int(wall * 1000)

    def _insert(self, items: list[EventRow], now_ms: int, nbytes: int) -> None:
        with self._db:  # one transaction: all or nothing
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO outbox (event_id, topic, payload, created_ms) VALUES (?, ?, ?, ?)",
                [(eid, topic, payload, now_ms) for eid, topic, payload in items],
            )
            self._save_dropped(0)
        self._dropped_saved = self._dropped
        self._depth += len(items)
        self._size_bytes += nbytes

    def _keep_disk_free(self, nbytes: int) -> None:
        """On a nearly full disk, make room inside the file (free pages that the next rows
        reuse) by shedding the oldest tenth, rather than growing the file."""
        disk = os.statvfs(self._dir)
        if disk.f_bavail * disk.f_frsize >= LOW_DISK_BYTES:
            return
        free_in_file = self._db.execute("PRAGMA freelist_count").fetchone()[0] * self._page_bytes
        if free_in_file < 2 * nbytes:
            shed = self._shed(lambda freed, _created: freed < max(2 * nbytes, self._size_bytes // 10))
            self._sparse("warning", "outbox_low_disk", shed_rows=shed, dropped_total=self._dropped)

    def _make_room_and_retry(self, items: list[EventRow], now_ms: int, nbytes: int) -> None:
        """The disk filled anyway (another process wrote to it): shed the oldest tenth,
        rewind the WAL and try once more. If that fails too, the new events are the ones
        lost, and they are counted in the ledger (which a full disk cannot stop): the
        pipeline never stops for a full disk."""
        try:
            shed = self._shed(lambda freed, _created: freed < max(nbytes, self._size_bytes // 10))
            self._db.execute("PRAGMA wal_checkpoint(RESTART)")
            self._sparse("warning", "outbox_disk_full", shed_rows=shed)
            self._insert(items, now_ms, nbytes)
        except sqlite3.OperationalError as e:
            if not _disk_full(e):
                raise
            self._ledger.lost_events(len(items))
            self._sparse("error", "outbox_disk_full_lost_new", lost=len(items), lost_total=self._ledger.events_lost)

    def _enforce_bounds(self, now_ms: int) -> None:
        cutoff_ms = now_ms - self._max_age_ms
        # rows are in time order by id (up to a clock step), so expired rows are a prefix
        self._shed(lambda _freed, created_ms: created_ms < cutoff_ms)
        excess = self._size_bytes - self._max_bytes
        if excess > 0:
            self._shed(lambda freed, _created: freed < excess)

    def _shed(self, keep_going: Callable[[int, int], bool]) -> int:
        """Delete the oldest rows while `keep_going(bytes freed so far, row created_ms)`;
        count them as dropped. Reads only the rows it deletes (plus one)."""
        freed = shed = last = 0
        for row_id, size, created_ms in self._db.execute(
            "SELECT id, LENGTH(payload), created_ms FROM outbox ORDER BY id"
        ):
            if not keep_going(freed, created_ms):
                break
            freed, shed, last = freed + size, shed + 1, row_id
        if not shed:
            return 0
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM outbox WHERE id <= ?", (last,))
                self._save_dropped(shed)
        except sqlite3.OperationalError as e:
            if not _disk_full(e):
                raise
            self._sparse("error", "outbox_shed_failed_disk_full", rows=shed)
            return 0
        self._dropped += shed
        self._dropped_saved = self._dropped
        self._depth -= shed
        self._size_bytes -= freed
        return shed

    def _save_dropped(self, more: int) -> None:
        """Write the drop count (plus `more` being shed now) inside the caller's transaction,
        so it commits or fails with it; a count that could not be written (disk full) is
        written by the next transaction that succeeds."""
        total = self._dropped + more
        if total != self._dropped_saved:
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (total,),
            )
