"""The one exception a received OTA message can raise, with a stable code per cause."""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(str, Enum):
    """Why a manifest was refused. The values go on `.../ota/status` and are a public contract."""

    def __str__(self) -> str:  # the value, as enum.StrEnum (3.11+) gives it, on 3.10 too
        return self.value

    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    OLD_VERSION = "old_version"
    SAME_VERSION = "same_version"
    WRONG_TARGET = "wrong_target"
    AGENT_TOO_OLD = "agent_too_old"
    # Applying an accepted manifest (download, staging, validation, switch, health window).
    DOWNLOAD_FAILED = "download_failed"
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    HASH_MISMATCH = "hash_mismatch"
    UNSAFE_EXTERNAL_DATA = "unsafe_external_data"
    MODEL_INVALID = "model_invalid"
    GOLDEN_MISMATCH = "golden_mismatch"
    TOO_SLOW = "too_slow"
    ZONES_INVALID = "zones_invalid"
    CONFIG_INVALID = "config_invalid"
    SWITCH_FAILED = "switch_failed"
    UNHEALTHY = "unhealthy"
    CRASH_LOOP = "crash_loop"
    STORAGE_FAILED = "storage_failed"


class OtaError(Exception):
    """A refused OTA message: `code` for machines, `message` for humans."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        # The manifest refused, when it was signed by a trusted key (its kind and version can be
        # believed and reported); None for a message that did not parse or verify.
        self.manifest: Any = None
