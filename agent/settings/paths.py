"""Relative paths in a config file are relative to that file's folder.

The loader sets the folder for the duration of one validation; every path
field (here and in the camera config) resolves against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

_BASE_DIR: ContextVar[Path | None] = ContextVar("config_base_dir", default=None)


@contextmanager
def relative_to(folder: Path) -> Iterator[None]:
    token = _BASE_DIR.set(folder.resolve())
    try:
        yield
    finally:
        _BASE_DIR.reset(token)


def resolve(path: Path) -> Path:
    """An absolute path: `path` itself, or joined to the config folder (else the working directory)."""
    if path.is_absolute():
        return path
    return ((_BASE_DIR.get() or Path.cwd()) / path).resolve()
