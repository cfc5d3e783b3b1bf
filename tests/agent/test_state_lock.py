"""The state folder's lock: one holder at a time, named to whoever is refused, free again once released."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.io.state_lock import LOCK_FILE, StateDirUnavailable, state_dir_lock
from tests.support.services import tmpfs


def test_a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with state_dir_lock(state_dir):  # made on the way
        assert (state_dir / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(StateDirUnavailable) as refused, state_dir_lock(state_dir):
            pass
        assert f"pid {os.getpid()}" in str(refused.value) and str(state_dir) in str(refused.value)
    with state_dir_lock(state_dir):  # released: the next one takes it
        pass


def test_a_state_dir_that_cannot_be_opened_is_named_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the folder should be")
    with pytest.raises(StateDirUnavailable) as refused, state_dir_lock(tmp_path / "state"):
        pass
    assert str(refused.value).startswith(f"state_dir {tmp_path / 'state'}: cannot open {tmp_path / 'state' / LOCK_FILE}")
    assert str(refused.value).endswith("that path is a file, not a folder: give state_dir another path")
    with pytest.raises(StateDirUnavailable) as refused, state_dir_lock(tmp_path / "state" / "sub"):
        pass
    assert str(refused.value).endswith("a part of that path is a file, not a folder: give state_dir another path")


def test_a_state_dir_this_user_cannot_write_is_named_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "locked").mkdir(mode=0o500)
    if os.access(tmp_path / "locked", os.W_OK):  # root writes anywhere: a read-only bind mount instead
        with tmpfs(tmp_path / "ro", "1m", read_only={}) as disk:
            with pytest.raises(StateDirUnavailable) as refused, state_dir_lock(disk / "state"):
                pass
        assert "the filesystem is read-only: give state_dir a folder on a writable one" in str(refused.value)
        return
    with pytest.raises(StateDirUnavailable) as refused, state_dir_lock(tmp_path / "locked" / "state"):
        pass
    assert "run the agent as the user that owns the state folder" in str(refused.value)
