"""The state folder's lock: one holder at a time, named to whoever is refused, free again once released."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.io.state_lock import LOCK_FILE, StateDirInUse, state_dir_lock


def test_a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go(tmp_path: Path) -> None:
    with state_dir_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(StateDirInUse) as refused, state_dir_lock(tmp_path):
            pass
        assert f"pid {os.getpid()}" in str(refused.value) and str(tmp_path) in str(refused.value)
    with state_dir_lock(tmp_path):  # released: the next one takes it
        pass


def test_a_lock_file_that_cannot_be_opened_is_a_warning_not_a_stop(tmp_path: Path, captured_logs: list[dict]) -> None:
    (tmp_path / LOCK_FILE).mkdir()  # as a full disk at the very first start would: no lock file to open
    ran = False
    with state_dir_lock(tmp_path):
        ran = True
    assert ran
    warning = next(r for r in captured_logs if r["event"] == "state_dir_lock_unavailable")
    assert warning["log_level"] == "warning" and warning["path"] == str(tmp_path / LOCK_FILE)
