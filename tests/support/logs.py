"""`captured_logs`: the structlog records a test's code logs, whatever configured logging before."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs


@pytest.fixture
def captured_logs() -> Iterator[list[dict]]:
    """A list that fills with every record (each with `event` and `log_level`) during the test.
    An in-process CLI call before may have configured the agent's logging (a level filter): reset."""
    structlog.reset_defaults()
    with capture_logs() as records:
        yield records
    structlog.reset_defaults()
