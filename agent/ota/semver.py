"""Semantic versions (semver.org 2.0.0): parsing and precedence, for `min_agent_version`."""

from __future__ import annotations

import re

# The regular expression suggested by semver.org; ASCII-only so that no other
# script's digits pass for a version number, and used with fullmatch.
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)

# Real versions are short; the cap bounds the regex's work on hostile input before anything else runs.
MAX_SEMVER_CHARS = 64

SemverKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


def semver_key(version: str) -> SemverKey:
    """A tuple that orders versions by semver precedence; ValueError if `version` is not semver.

    A release sorts after its pre-releases (1.0.0-rc.1 < 1.0.0); pre-release
    identifiers compare numerically when numeric, and numeric ones sort before
    alphanumeric ones; build metadata is ignored.
    """
    if len(version) > MAX_SEMVER_CHARS:
        raise ValueError(f"a version has at most {MAX_SEMVER_CHARS} characters, got {len(version)}")
    match = _SEMVER.fullmatch(version)
    if match is None:
        raise ValueError(f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])")
    major, minor, patch, prerelease, _build = match.groups()
    if prerelease is None:
        return int(major), int(minor), int(patch), 1, ()
    identifiers = tuple((0, int(p)) if p.isdigit() else (1, p) for p in prerelease.split("."))
    return int(major), int(minor), int(patch), 0, identifiers
