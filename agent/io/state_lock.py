"""One agent per state folder.

Two agents on one state_dir (the service, and a technician's `edge-agent run` by hand)
would share the outbox, the OTA slots and the status socket, and, with one device id,
throw each other off the broker in turn. The second one to start is refused instead,
with the first one's pid and what to do. The lock is an flock on `state_dir/agent.lock`,
so the kernel releases it when its holder ends, however it ends.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "agent.lock"
FULL_DISK_ADVICE = "free space there (old logs, core dumps), or give state_dir a folder on a filesystem with room"
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # an OSError with these: a full disk (or quota)
# a file the agent must rewrite (its zones) that it may not: where to put it
WRITABLE_FOLDER_ADVICE = "a folder the agent may write (on an installed box, its state dir; edge-agent doctor names it)"
# what to do when the folder cannot be opened, by the reason the system gives
_ADVICE = {
    errno.EROFS: "the filesystem is read-only: give state_dir a folder on a writable one (e.g. /var/lib/edge-agent)",
    errno.ENOTDIR: "a part of that path is a file, not a folder: give state_dir another path",
    errno.EEXIST: "that path is a file, not a folder: give state_dir another path",
    errno.ENOSPC: f"its filesystem is full: {FULL_DISK_ADVICE}",
}
_PERMISSIONS = (
    "run the agent as the user that owns the state folder (the service's user), or fix the folder's owner and permissions"
)


class StateDirUnavailable(Exception):
    """Another agent holds the state folder, this user cannot use it, or a first start finds its disk full;
    the message says what to do."""


@contextmanager
def state_dir_lock(state_dir: Path) -> Iterator[None]:
    """Make `state_dir` if need be and hold it for this process; raises StateDirUnavailable if another
    process holds it or it cannot be opened."""
    path = state_dir / LOCK_FILE
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise StateDirUnavailable(
            f"state_dir {state_dir}: cannot open {path} ({e.strerror or e}): {_ADVICE.get(e.errno, _PERMISSIONS)}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StateDirUnavailable(
                f"another edge-agent (pid {holder}) is running with state_dir {state_dir}: stop it first "
                "(systemctl stop edge-agent, or end the one started by hand), or give this one another state_dir"
            ) from None
        try:  # for the message above; the lock does not depend on it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)
