"""The hash-chained audit log: valid chains verify, every kind of tampering is caught."""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.io.audit import (
    GAP_ACTION,
    GENESIS_HASH,
    AuditLog,
    AuditLogError,
    VerifyResult,
    add_audit_parser,
    verify,
)
from agent.io.ledger import LossLedger


def write_log(path: Path, n: int = 5) -> list[dict]:
    with AuditLog(path) as log:
        return [log.append("technician", "zones.change", old=i, new=i + 1) for i in range(n)]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    path.write_bytes(b"".join(edit(lines(path))))


def edit_field(ls: list[bytes], index: int = 2) -> list[bytes]:
    record = json.loads(ls[index])
    record["details"]["new"] = 99
    ls[index] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    return ls


def forge_wrong_prev(ls: list[bytes]) -> list[bytes]:
    """A self-consistent record (hash recomputed) that does not link to the chain."""
    from agent.io.audit import _canonical, _record_hash

    last = json.loads(ls[-1])
    forged = dict(last, seq=last["seq"] + 1, action="stop", prev="f" * 64)
    forged["hash"] = _record_hash(forged)
    return [*ls, _canonical(forged) + b"\n"]


TAMPERING = {
    # name: (edit, 1-based line where the problem is reported, words in the message)
    "edit a field": (edit_field, 3, "edited"),
    "delete a middle line": (lambda ls: ls[:2] + ls[3:], 3, "seq 4 where 3"),
    "swap two lines": (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, "reordered"),
    "truncate the last line": (lambda ls: [*ls[:-1], ls[-1][:40]], 5, "truncated"),
    "append a forged line with a wrong prev": (forge_wrong_prev, 6, "prev does not match"),
    "insert a copy of a line": (lambda ls: [*ls[:2], ls[1], *ls[2:]], 3, "seq 2 where 3"),
    "garbage line": (lambda ls: [*ls[:1], b"not json\n", *ls[1:]], 2, "not valid JSON"),
}


def test_valid_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    records = write_log(path)
    result = verify(path)
    assert result.ok and result.line is None and result.problem is None
    assert result.records == 5
    assert result.head == records[-1]["hash"]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev"] == GENESIS_HASH
    assert all(b["prev"] == a["hash"] for a, b in zip(records, records[1:], strict=False))


def test_record_shape(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        record = log.append("ota", "model.change", old="v1", new="v2")
    on_disk = json.loads(path.read_text())
    assert on_disk == record
    assert set(record) == {"seq", "ts", "actor", "action", "details", "prev", "hash"}
    assert record["details"] == {"old": "v1", "new": "v2"}
    assert record["ts"].endswith("Z") and len(record["ts"]) == len("2025-01-01T00:00:00.000Z")


def test_empty_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch()
    assert verify(path) == VerifyResult(ok=True, records=0, head=GENESIS_HASH)


@pytest.mark.parametrize(("edit", "line", "words"), TAMPERING.values(), ids=TAMPERING.keys())
def test_tampering_is_detected(tmp_path: Path, edit, line: int, words: str) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    rewrite(path, edit)
    result = verify(path)
    assert not result.ok
    assert result.line == line
    assert words in result.problem
    assert result.records == line - 1


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = write_log(path, 3)
    with AuditLog(path) as log:
        assert log.head() == first[-1]["hash"]
        record = log.append("agent", "start")
    assert record["seq"] == 4 and record["prev"] == first[-1]["hash"]
    assert verify(path).ok and verify(path).records == 4


BROKEN_TAILS = {
    "edited": lambda ls: edit_field(ls, -1),
    "truncated": TAMPERING["truncate the last line"][0],
    "garbage": lambda ls: [*ls, b"not json\n"],
}


@pytest.mark.parametrize("edit", BROKEN_TAILS.values(), ids=BROKEN_TAILS.keys())
def test_refuses_to_open_a_broken_tail(tmp_path: Path, edit) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    rewrite(path, edit)
    with pytest.raises(AuditLogError, match="last record"):
        AuditLog(path)


def test_refuses_when_the_tail_breaks_after_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append("agent", "start")
        with path.open("ab") as f:
            f.write(b'{"half a rec')
        with pytest.raises(AuditLogError):
            log.append("agent", "stop")


def _append_many(path: Path, n: int) -> None:
    with AuditLog(path) as log:
        for i in range(n):
            log.append("worker", "tick", i=i)


def test_two_processes_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_many, args=(path, 50)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    result = verify(path)
    assert result.ok and result.records == 100


def test_details_must_be_json(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl") as log:
        with pytest.raises(TypeError):
            log.append("agent", "start", when=object())
        with pytest.raises(ValueError):
            log.append("agent", "start", ratio=float("nan"))
        assert log.append("agent", "start")["seq"] == 1  # a refused append leaves no trace


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="edge-agent")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    assert run_cli("audit", "verify", str(path)) == 0
    assert capsys.readouterr().out.startswith("ok: 5 records")

    rewrite(path, TAMPERING["delete a middle line"][0])
    assert run_cli("audit", "verify", str(path)) == 1
    out = capsys.readouterr().out
    assert f"{path}:3:" in out and "removed" in out

    assert run_cli("audit", "verify", str(tmp_path / "missing.jsonl")) == 2


def test_a_full_disk_costs_records_not_the_log_and_the_gap_is_recorded_across_a_restart(small_disk: Path) -> None:
    """On a real full disk: a record that does not fit is cut back off (the file stays intact),
    counted in the ledger (which a restart finds again), and the first record that fits after
    that is preceded by a `gap` record, which `verify` lists as a gap, not tampering."""
    path, ledger_path = small_disk / "audit.jsonl", small_disk / "losses.json"
    with AuditLog(path, LossLedger(ledger_path)) as log:
        log.append("agent", "start")
        hog = small_disk / "hog"
        with open(hog, "wb", buffering=0) as f:
            for chunk in (65536, 1):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(bytes(chunk))
        lost = 0
        for i in range(200):  # the last page of the file has some room; then the disk is full
            try:
                log.append("rules", "alert", i=i, pad="x" * 200)
            except OSError:
                lost += 1
        assert lost > 0 and verify(path).ok
    ledger = LossLedger(ledger_path)  # a restart, the disk still full
    assert ledger.audit_lost == lost and ledger.audit_gap()["lost"] == lost
    hog.unlink()
    with AuditLog(path, ledger) as log:
        log.append("agent", "start")
    result = verify(path)
    assert result.ok and [r["action"] for _, r in result.gaps] == [GAP_ACTION]
    (_, gap), last = result.gaps[0], json.loads(lines(path)[-1])
    assert gap["details"]["lost"] == lost and gap["details"]["actions"] == {"alert": lost}
    assert gap["seq"] == last["seq"] - 1 and last["action"] == "start"  # right before the record that fit
    assert LossLedger(ledger_path).audit_gap() is None  # noted once
