"""One log record per line whichever thread writes, and tracebacks inside their record
(issue 12, item 6): a real process with many threads logging big records at once into
a pipe, and one thread dying of an exception."""

from __future__ import annotations

import json
import subprocess
import sys

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
