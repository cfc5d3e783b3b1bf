"""semver_key orders versions by semver.org precedence and refuses anything else."""

from __future__ import annotations

import pytest

from agent.ota.semver import semver_key

# Precedence example from semver.org section 11, plus build metadata and multi-digit fields.
ORDERED = [
    "0.9.9",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.2.0",
    "1.10.0",
    "10.0.0",
]


def test_precedence() -> None:
    assert sorted(ORDERED, key=semver_key) == ORDERED
    assert semver_key("1.0.0+build.5") == semver_key("1.0.0")


@pytest.mark.parametrize(
    "bad", ["1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0\n", " 1.0.0", "١.٢.٣", "", "1.0.0-" + "a" * 64]
)
def test_refuses_non_semver(bad: str) -> None:
    with pytest.raises(ValueError):
        semver_key(bad)
