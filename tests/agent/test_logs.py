"""One log record per line whichever thread writes, and tracebacks inside their record
(issue 12, item 6): a real process with many threads logging big records at once into
a pipe, and one thread dying of an exception. A record that a lasting state repeats many
times a second (a full disk) is logged sparsely."""

from __future__ import annotations

import json
import subprocess
import sys

from agent.io.logs import Sparse
from tests.conftest import REPO

THREADS, RECORDS, FIELD_BYTES = 8, 400, 6000  # each record well over a pipe's atomic write (4 KiB)

SCRIPT = f"""
import threading
import structlog
from agent.io import logs

logs.configure("info")
log = structlog.get_logger("t")

def talk(n):
    for i in range({RECORDS}):
        log.info("talk", thread=n, i=i, pad="x" * {FIELD_BYTES})

def die():
    raise RuntimeError("boom in a thread")

threads = [threading.Thread(target=talk, args=(n,)) for n in range({THREADS})] + [threading.Thread(target=die, name="dier")]
for t in threads:
    t.start()
for t in threads:
    t.join()
raise ValueError("boom on the main thread")
"""


def test_concurrent_records_are_whole_lines_and_tracebacks_stay_inside_them() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    records = [json.loads(line) for line in lines]  # any two records sharing a line fail here
    talk = [r for r in records if r["event"] == "talk"]
    assert len(talk) == THREADS * RECORDS and all(len(r["pad"]) == FIELD_BYTES for r in talk)
    (thread,) = [r for r in records if r["event"] == "thread_crashed"]
    assert thread["thread"] == "dier" and "RuntimeError: boom in a thread" in thread["exception"]
    (main,) = [r for r in records if r["event"] == "uncaught_exception"]
    assert "Traceback" in main["exception"] and "ValueError: boom on the main thread" in main["exception"]
    assert len(records) == len(talk) + 2  # nothing else, no raw traceback lines


def test_a_sparse_record_is_logged_first_then_once_per_interval_with_the_repeats_between() -> None:
    now = [100.0]
    said: list[tuple[str, str, dict]] = []

    class Recorder:
        def __getattr__(self, level: str):
            return lambda event, **fields: said.append((level, event, fields))

    sparse = Sparse(Recorder(), every_s=10.0, clock=lambda: now[0])
    for step in range(25):  # one failure a second for 25 s
        now[0] = 100.0 + step
        sparse("error", "outbox_disk_full_lost_new", lost=1)
        sparse("warning", "outbox_low_disk", shed_rows=step)
    assert [(level, event, fields.get("repeats")) for level, event, fields in said] == [
        ("error", "outbox_disk_full_lost_new", None), ("warning", "outbox_low_disk", None),
        ("error", "outbox_disk_full_lost_new", 9), ("warning", "outbox_low_disk", 9),
        ("error", "outbox_disk_full_lost_new", 9), ("warning", "outbox_low_disk", 9),
    ]  # fmt: skip
    assert said[3][2]["shed_rows"] == 10  # the fields of the record logged, not of the first
