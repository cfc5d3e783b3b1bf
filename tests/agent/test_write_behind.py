"""Events written behind the pipeline: a slow commit does not hold the caller, nothing handed over
is lost or reordered, a commit that fails is raised to the caller, and the wait is bounded."""

from __future__ import annotations

import threading

import pytest

from agent.io.outbox import Outbox
from agent.io.write_behind import WriteBehind


def rows(n, start=0):
    return [(f"e{i}", "t", b"x") for i in range(start, start + n)]


class Gated:
    """A sink whose puts wait for `gate`; records each batch it was given.

    Not the outbox: a commit must hang, or fail, at a moment the test chooses. The real outbox behind the
    writer is the last test's, and the agent's on a real full disk tests/integration/test_disk_full.py's."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list] = []
        self.fail = fail

    def put(self, items):
        self.entered.set()
        assert self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(items))


def test_a_slow_commit_does_not_hold_the_caller_and_rows_waiting_go_together_in_order():
    inner = Gated()
    with WriteBehind(inner) as writer:
        writer.put(rows(2))
        assert inner.entered.wait(10)  # the first batch is in a commit that has not returned
        writer.put(rows(3, start=2))  # returns while that commit hangs
        writer.put(rows(1, start=5))
        assert inner.batches == []
        inner.gate.set()
    assert [len(b) for b in inner.batches] == [2, 4]  # what waited meanwhile: one commit
    assert [eid for b in inner.batches for eid, _, _ in b] == [f"e{i}" for i in range(6)]


def test_close_passes_on_every_row_to_the_real_outbox_and_is_idempotent(tmp_path):
    with Outbox(tmp_path / "o.sqlite", max_bytes=10**6, max_age_s=3600) as outbox:
        writer = WriteBehind(outbox)
        for start in range(0, 300, 3):
            writer.put(rows(3, start))
        writer.close()
        writer.close()
        assert [r.event_id for r in outbox.pending(1000)] == [f"e{i}" for i in range(300)]
        with pytest.raises(RuntimeError, match="after close"):
            writer.put(rows(1))


def test_a_failed_commit_is_raised_by_the_next_put_and_not_again_by_close():
    inner = Gated(fail=OSError(5, "Input/output error"))
    writer = WriteBehind(inner)
    writer.put(rows(1))
    inner.gate.set()
    with pytest.raises(OSError, match="Input/output"):
        for _ in range(1000):  # until the writer has failed; each put returns at once before that
            writer.put(rows(1))
            threading.Event().wait(0.01)
    writer.close()  # already raised to the pipeline: not raised twice


def test_a_failed_commit_nobody_put_after_is_raised_by_close():
    inner = Gated(fail=OSError(28, "No space left on device"))
    inner.gate.set()
    writer = WriteBehind(inner)
    writer.put(rows(1))
    with pytest.raises(OSError, match="No space"):
        writer.close()


def test_put_waits_while_the_bound_is_reached_and_goes_on_when_the_commit_returns():
    inner = Gated()
    writer = WriteBehind(inner, max_waiting_rows=4)
    writer.put(rows(1))
    assert inner.entered.wait(10)  # that row is in a commit; now fill the waiting room
    writer.put(rows(4, start=1))
    returned = threading.Event()
    blocked = threading.Thread(target=lambda: (writer.put(rows(1, start=5)), returned.set()))
    blocked.start()
    assert not returned.wait(0.3)  # 4 rows wait: the fifth put waits for room
    inner.gate.set()
    assert returned.wait(10)
    blocked.join()
    writer.close()
    assert [eid for b in inner.batches for eid, _, _ in b] == [f"e{i}" for i in range(6)]
