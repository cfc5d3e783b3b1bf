"""The applier's persisted state: which slot serves each kind, the versions seen, the update in progress.

One small JSON file, rewritten whole and atomically (temp file, fsync,
rename, fsync of the folder) before every step acts: after a power cut or a
SIGKILL it holds either the state before a write or the state after it, never
a mix, so the next start can finish or undo the update from what it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.ota.errors import ErrorCode, OtaError
from agent.ota.manifest import MAX_VERSION, Kind
from agent.settings.errors import describe_validation_error
from engines.atomic import write_atomic

KINDS: tuple[Kind, ...] = ("model", "zones", "config")

Slot = Literal["a", "b"]
# The steps of an update, in order; `rollback` is entered from any of them when one fails.
Step = Literal["download", "verify", "stage", "validate", "switch", "watch", "rollback"]
STEPS: tuple[Step, ...] = ("download", "verify", "stage", "validate", "switch", "watch", "rollback")
# Before `switch` the old version is live and untouched; from `watch` on the new one is.
PRE_SWITCH_STEPS: frozenset[Step] = frozenset({"download", "verify", "stage", "validate"})

Version = Field(ge=0, le=MAX_VERSION)

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class KindState(BaseModel):
    """What serves one kind of update, and the versions it may no longer accept."""

    model_config = _FROZEN

    active: Slot | None = Field(None, description="Slot that serves this kind; None: the agent's own config files.")
    active_version: int = Field(0, ge=0, le=MAX_VERSION, description="Version in the active slot (0: none).")
    last_version: int = Field(0, ge=0, le=MAX_VERSION, description="Highest version committed (anti-rollback).")
    failed_version: int = Field(
        0, ge=0, le=MAX_VERSION, description="Highest version that failed: never tried again, publish a higher one."
    )

    @property
    def refused_up_to(self) -> int:
        """Versions up to this one are refused by `verify` (as old or same)."""
        return max(self.last_version, self.failed_version)


class Update(BaseModel):
    """The update in progress: enough to resume it or undo it after a crash."""

    model_config = _FROZEN

    kind: Kind
    version: int = Field(ge=1, le=MAX_VERSION)
    envelope: str = Field(description="The signed message as received; verified again on resume.")
    slot: Slot = Field(description="The inactive slot being staged.")
    previous: Slot | None = Field(description="The slot that served before (None: the agent's own config).")
    previous_version: int = Field(ge=0, le=MAX_VERSION)
    step: Step
    resumes: int = Field(0, ge=0, description="Starts that found this update in progress (crash-loop guard).")
    error_code: ErrorCode | None = Field(None, description="Why a rollback was started.")
    error_message: str = ""


class OtaState(BaseModel):
    """The whole persisted state."""

    model_config = _FROZEN

    kinds: dict[Kind, KindState] = Field(default_factory=lambda: {k: KindState() for k in KINDS})
    update: Update | None = None

    def of(self, kind: Kind) -> KindState:
        """The state of one kind (a fresh one when absent)."""
        return self.kinds.get(kind, KindState())

    def with_kind(self, kind: Kind, **changes: object) -> OtaState:
        """A copy with fields of one kind's state changed."""
        return self.model_copy(update={"kinds": {**self.kinds, kind: self.of(kind).model_copy(update=changes)}})

    def with_step(self, step: Step, **changes: object) -> OtaState:
        """A copy with the update in progress moved to `step`."""
        assert self.update is not None
        return self.model_copy(update={"update": self.update.model_copy(update={"step": step, **changes})})

    def refused_versions(self) -> dict[str, int]:
        """`last_versions` for `verify`: per kind, the highest version it must refuse."""
        return {k: s.refused_up_to for k, s in self.kinds.items() if s.refused_up_to}

    def served_slot(self, kind: Kind) -> Slot | None:
        """The slot a starting agent serves for `kind`: the active one, or the previous one while rolling back."""
        update = self.update
        if update is not None and update.kind == kind and update.step == "rollback":
            return update.previous
        return self.of(kind).active


class StateStore:
    """Loads and saves `OtaState` at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> OtaState:
        """The saved state, or a fresh one if none was ever saved; OtaError(storage_failed) if unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return OtaState()
        except OSError as exc:
            raise OtaError(ErrorCode.STORAGE_FAILED, f"{self.path}: cannot read: {exc}") from exc
        try:
            return OtaState.model_validate_json(raw)
        except ValidationError as exc:
            # Atomic writes never leave a half-written file: this is corruption or tampering, and
            # guessing a state could lower the anti-rollback versions, so the caller must decide.
            raise OtaError(ErrorCode.STORAGE_FAILED, f"{self.path}: {describe_validation_error(exc)}") from exc

    def save(self, state: OtaState) -> None:
        """Write `state` atomically and durably."""
        write_atomic(self.path, state.model_dump_json(indent=1).encode("utf-8"))
