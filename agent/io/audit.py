"""A local append-only, hash-chained audit log, and `edge-agent audit verify`.

One JSON object per line: `seq` (1, 2, ...), `ts` (UTC, ISO 8601 with
milliseconds), `actor` (who or what), `action`, `details` (a JSON object),
`prev` (the previous record's hash; 64 zeros for the first) and `hash`, the
SHA-256 of the canonical JSON of the record without `hash`. Editing, removing,
inserting or reordering a record breaks the chain at that line.

What a chain alone cannot show: a rewrite of the whole tail with recomputed
hashes, or the last records cut off cleanly. That is why the head hash goes
into the retained status: the centre remembers it and notices a rewind.

The log says what it could not hold. A record that cannot be written (a full
disk) is counted in the LossLedger and cut back off the file, so the file stays
intact; the first record that fits again is preceded by a `gap` record (actor
`audit`: how many records, of which actions, between which times, and why). A
log found damaged at start is set aside and the new chain starts with an
`audit_log_damaged` record. `audit verify` lists both as gaps, not tampering.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone  # not datetime.UTC: JetPack 6 ships Python 3.10
from pathlib import Path
from typing import Any

from agent.io.ledger import LossLedger
from engines.atomic import fsync_dir

__all__ = [
    "GENESIS_HASH",
    "AuditLog",
    "AuditLogError",
    "VerifyResult",
    "add_audit_parser",
    "cmd_audit_verify",
    "verify",
]

GENESIS_HASH = "0" * 64
GAP_ACTION = "gap"  # records this log could not hold (disk full), written once one fits again
DAMAGED_ACTION = "audit_log_damaged"  # the first record of a chain that replaced a damaged log
_FIELDS = frozenset({"seq", "ts", "actor", "action", "details", "prev", "hash"})
_TAIL_CHUNK_BYTES = 4096


class AuditLogError(RuntimeError):
    """The log cannot be appended to: its last record is damaged or forged."""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of `verify`.

    records: records verified before the first problem (all of them when ok).
    head: hash of the last verified record (GENESIS_HASH for an empty log).
    line: 1-based line number of the first problem; None when ok.
    """

    ok: bool
    records: int
    head: str
    line: int | None = None
    problem: str | None = None
    gaps: tuple[tuple[int, dict[str, Any]], ...] = ()  # (line, record) of every `gap` and `audit_log_damaged`


def _canonical(record: Mapping[str, Any]) -> bytes:
    # Sorted keys, no spaces, no NaN: one byte string per record, whoever wrote it.
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _parse(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A record from one raw line (with its newline), or the problem with it."""
    if not line.endswith(b"\n"):
        return None, "truncated record (no newline at end)"
    try:
        record = json.loads(line)
    except ValueError as exc:
        return None, f"not valid JSON ({exc.msg})"
    if not isinstance(record, dict) or set(record) != _FIELDS:
        return None, f"not an audit record (fields must be {sorted(_FIELDS)})"
    if record["hash"] != _record_hash(record):
        return None, "hash mismatch: the record was edited"
    return record, None


def _iter_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from f


def _link_problem(record: Mapping[str, Any], seq: int, prev: str) -> str | None:
    """Why `record` cannot follow the record numbered `seq` with hash `prev`, if it cannot."""
    if record["seq"] != seq + 1:
        return (
            f"seq {record['seq']!r} where {seq + 1} was expected: "
            "a record was removed, inserted or reordered"
        )
    if record["prev"] != prev:
        return (
            "prev does not match the hash of the record before: "
            "a record was removed, inserted, reordered or forged"
        )
    return None


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Check every record of the log at `path`; stop at the first problem and name its line."""
    prev, seq = GENESIS_HASH, 0
    gaps: list[tuple[int, dict[str, Any]]] = []
    for line_no, line in enumerate(_iter_lines(Path(path)), start=1):
        record, problem = _parse(line)
        if record is not None:
            problem = _link_problem(record, seq, prev)
        if problem is not None:
            return VerifyResult(ok=False, records=seq, head=prev, line=line_no, problem=problem, gaps=tuple(gaps))
        if record["action"] in (GAP_ACTION, DAMAGED_ACTION):
            gaps.append((line_no, record))
        prev, seq = record["hash"], record["seq"]
    return VerifyResult(ok=True, records=seq, head=prev, gaps=tuple(gaps))


def _utc_now_iso_ms() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Appends records to the hash chain at `path`, creating the file if needed.

    Thread-safe, and safe against another process appending to the same file
    (an exclusive flock around each append; the chain is re-read when the file
    grew behind our back). Each record is fsynced before `append` returns.
    Raises AuditLogError at open, or at append, when the last line is not an
    intact record: appending after damage would bless it.
    """

    def __init__(self, path: str | os.PathLike[str], ledger: LossLedger | None = None) -> None:
        self.path = Path(path)
        self._ledger = ledger if ledger is not None else LossLedger(None)
        created = not self.path.exists()
        # O_APPEND: every write lands at the current end, even with other writers.
        self._fd = os.open(
            self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
        )
        if created:
            fsync_dir(self.path.parent)  # so the new file survives a power cut
        self._lock = threading.Lock()
        self._size = -1
        self._seq = 0
        self._head = GENESIS_HASH
        try:
            with self._lock, _flocked(self._fd):
                self._resume()
        except BaseException:
            os.close(self._fd)
            raise

    def head(self) -> str:
        """Hash of the last record (GENESIS_HASH when empty), for the retained status."""
        with self._lock:
            return self._head

    def append(self, actor: str, action: str, **details: Any) -> dict[str, Any]:
        """Append one record and return it (with `seq`, `ts`, `prev` and `hash`).

        actor: who or what acted (`technician`, `ota`, `agent`, ...); action:
        what happened (`config.change`, `start`, ...); details: JSON values,
        e.g. old and new versions.

        Raises OSError when the record cannot be written (a full disk): the file is left
        as it was, and the loss is counted for the next `gap` record.
        """
        if not actor or not action:
            raise ValueError("actor and action must be non-empty")
        with self._lock, _flocked(self._fd):
            if os.fstat(self._fd).st_size != self._size:
                self._resume()
            try:
                if (gap := self._ledger.audit_gap()) is not None:
                    self._write("audit", GAP_ACTION, gap)
                    self._ledger.clear_gap()
                return self._write(actor, action, details)
            except OSError as e:
                self._ledger.lost_audit_record(action, e.strerror or str(e))
                raise

    def _write(self, actor: str, action: str, details: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record (under the locks); a failed write is cut back off the file."""
        record: dict[str, Any] = {
            "seq": self._seq + 1,
            "ts": _utc_now_iso_ms(),
            "actor": actor,
            "action": action,
            "details": dict(details),
            "prev": self._head,
        }
        record["hash"] = _record_hash(record)
        data = _canonical(record) + b"\n"
        size, self._size = self._size, -1  # if the write fails midway, re-read the tail before the next one
        try:
            _write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, size)  # shrinking needs no space: the half record goes, the log stays intact
            self._size = size
            raise
        self._size = size + len(data)
        self._seq, self._head = record["seq"], record["hash"]
        return record

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _resume(self) -> None:
        """Take seq and head from the last line; refuse a damaged tail."""
        size = os.fstat(self._fd).st_size
        tail = _last_line(self._fd, size)
        if tail:
            record, problem = _parse(tail)
            if record is None:
                raise AuditLogError(f"{self.path}: last record: {problem}; run `edge-agent audit verify`")
            self._seq, self._head = record["seq"], record["hash"]
        self._size = size


def _last_line(fd: int, size: int) -> bytes:
    """The file's last line, newline included (b"" for an empty file), read backwards."""
    buf, pos = b"", size
    while pos > 0:
        step = min(_TAIL_CHUNK_BYTES, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        cut = buf.rfind(b"\n", 0, len(buf) - 1)  # skip the newline ending the last line
        if cut >= 0:
            return buf[cut + 1 :]
    return buf


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextmanager
def _flocked(fd: int) -> Iterator[None]:
    """Exclusive advisory lock on an open file, so two processes never fork the chain."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def add_audit_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `audit verify FILE`; the handler is set as `handler` in the parsed args."""
    audit = subparsers.add_parser("audit", help="inspect the local audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True)
    check = actions.add_parser(
        "verify", help="check the hash chain; exit 0 when intact, 1 when tampered, 2 when unreadable"
    )
    check.add_argument("file", type=Path, help="audit log (JSON lines)")
    check.set_defaults(handler=cmd_audit_verify)
    return audit


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """`edge-agent audit verify FILE`: print the verdict and return the exit code."""
    try:
        result = verify(args.file)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}")
        return 2
    for line, record in result.gaps:
        print(f"gap: {args.file}:{line}: {_describe_gap(record)}")
    if result.ok:
        gaps = f", {len(result.gaps)} gaps (not tampering: the log says what it missed)" if result.gaps else ""
        print(f"ok: {result.records} records, head {result.head}{gaps}")
        return 0
    print(f"tampered: {args.file}:{result.line}: {result.problem}")
    print(f"the first {result.records} records are intact, head {result.head}")
    return 1


def _describe_gap(record: Mapping[str, Any]) -> str:
    d = record["details"]
    if record["action"] == DAMAGED_ACTION:
        return f"the log before this one was damaged ({d.get('problem')}) and set aside as {d.get('moved_to')}"
    span = " to ".join(
        datetime.fromtimestamp(d[k] / 1000, timezone.utc).isoformat(timespec="seconds") for k in ("from_ms", "to_ms")
    )
    return f"{d['lost']} records not written ({d.get('error')}), {span}: {d.get('actions')}"
