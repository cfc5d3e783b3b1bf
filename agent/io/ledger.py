"""What the box could not write, counted where a full disk cannot stop the count.

A full disk is a state, not a crash: an event the outbox cannot store, or an audit
record the log cannot hold, is counted here and the agent goes on. The counts live in
`state_dir/losses.json`, a file of fixed size made while there is room and from then on
overwritten in place (an overwrite reuses the file's blocks: it needs no free space),
so they survive a restart with the disk still full.

`audit_gap` is what the audit log lost since its last `gap` record: the log writes one
(and `clear_gap`s it) as soon as a record fits again, so its chain says what it missed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from agent.io.logs import Sparse

__all__ = ["LossLedger"]

log = structlog.get_logger(__name__)

_FILE_BYTES = 1024  # far more than the counts need; the file never grows


def _empty() -> dict[str, Any]:
    return {"events_lost": 0, "audit_lost": 0, "audit_gap": None}


class LossLedger:
    """Thread-safe counters, persisted in place at `path` (None: in memory only)."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._sparse = Sparse(log)  # a full disk fails every save: said every few seconds, not each time
        self._counts = _empty()
        if path is None:
            return
        try:
            raw = path.read_bytes() if path.exists() else b""
            if raw.strip(b"\0 \n"):
                self._counts = {**_empty(), **json.loads(raw)}
        except (OSError, ValueError) as e:
            # Unreadable (a torn write): count from zero. Said loudly: the counts of an earlier boot may be lost.
            log.error("loss_ledger_unreadable", path=str(path), error=str(e))
            raw = b""
        if len(raw) < _FILE_BYTES:
            self._save()  # made full size now, while there is room; without room, in memory until a save succeeds

    @property
    def events_lost(self) -> int:
        return int(self._counts["events_lost"])

    @property
    def audit_lost(self) -> int:
        return int(self._counts["audit_lost"])

    def audit_gap(self) -> dict[str, Any] | None:
        """What the audit log lost since its last `gap` record: lost, from_ms, to_ms, actions, error."""
        with self._lock:
            gap = self._counts["audit_gap"]
            return None if gap is None else dict(gap)

    def lost_events(self, n: int) -> None:
        with self._lock:
            self._counts["events_lost"] += n
            self._save()

    def lost_audit_record(self, action: str, error: str) -> None:
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            gap = self._counts["audit_gap"] or {"lost": 0, "from_ms": now_ms, "actions": {}}
            gap["lost"] += 1
            gap["to_ms"] = now_ms
            gap["error"] = error
            gap["actions"][action] = gap["actions"].get(action, 0) + 1
            self._counts["audit_gap"] = gap
            self._counts["audit_lost"] += 1
            self._save()

    def clear_gap(self) -> None:
        with self._lock:
            self._counts["audit_gap"] = None
            self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        try:
            self._write()
        except OSError as e:  # kept in memory; the next save writes it
            self._sparse("error", "loss_ledger_unsaved", path=str(self._path), error=str(e))

    def _write(self) -> None:
        data = json.dumps(self._counts, separators=(",", ":")).encode()
        if len(data) > _FILE_BYTES:  # the action names are few; never let the count outgrow its file
            self._counts["audit_gap"]["actions"] = {"(many)": self._counts["audit_gap"]["lost"]}
            data = json.dumps(self._counts, separators=(",", ":")).encode()
        assert self._path is not None
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)  # opened per write: no fd held
        try:
            os.pwrite(fd, data.ljust(_FILE_BYTES, b" "), 0)
            os.fdatasync(fd)
        finally:
            os.close(fd)
