"""The OTA state machine: download -> verify -> stage -> validate -> switch -> watch -> commit, or roll back.

Every step is written to `state.json` before it acts and every step is
idempotent, so a start that finds an update in progress (after a SIGKILL or a
power cut) runs it again from its persisted step; what the agent serves at
start is a pure function of that file (`slots.served_*`): the old version
before `switch` has completed, the new one after, never a mix. An update whose
starts keep being interrupted (a new model that crashes the agent) is rolled
back after `max_resumes` starts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import structlog
from pydantic import ValidationError

from agent.io.state_lock import FULL_DISK_ADVICE, FULL_DISK_ERRNOS
from agent.ota import steps
from agent.ota.control import AgentControl, Baseline
from agent.ota.errors import ErrorCode, OtaError
from agent.ota.manifest import Kind, Manifest
from agent.ota.report import DeviceIdentity, OtaStatus, StepSettings
from agent.ota.slots import SlotLayout, other_slot
from agent.ota.state import PRE_SWITCH_STEPS, OtaState, Update
from agent.ota.verifier import authenticate, verify
from agent.settings.config import ConfigError
from agent.settings.errors import describe_validation_error
from agent.settings.trust import TrustStore
from engines.manifest import ModelError

log = structlog.get_logger(__name__)

# Refusals that retained messages cause by themselves (a manifest for another
# device, or one already applied, delivered again on every reconnect): logged,
# not reported, so that `.../ota/status` keeps showing the last real outcome.
QUIET_CODES = frozenset({ErrorCode.WRONG_TARGET, ErrorCode.SAME_VERSION, ErrorCode.OLD_VERSION})
# The code an unexpected exception in a step is reported under.
_DEFAULT_CODES = {
    "download": ErrorCode.DOWNLOAD_FAILED,
    "verify": ErrorCode.MODEL_INVALID,
    "stage": ErrorCode.STORAGE_FAILED,
    "switch": ErrorCode.SWITCH_FAILED,
    "watch": ErrorCode.UNHEALTHY,
}
_VALIDATE_CODES: dict[Kind, ErrorCode] = {
    "model": ErrorCode.MODEL_INVALID,
    "zones": ErrorCode.ZONES_INVALID,
    "config": ErrorCode.CONFIG_INVALID,
}


class Applier:
    """Applies verified manifests to one agent through `control`; one update at a time, on the caller's thread.

    `report` receives an OtaStatus at every step and outcome (for
    `.../ota/status`); `on_step(point)` is called after a step is persisted
    and before it acts (`point` = the step) and after it acted (`<step>.done`):
    tests block there to kill the process at a chosen point.
    """

    def __init__(
        self,
        control: AgentControl,
        layout: SlotLayout,
        trust: TrustStore,
        identity: DeviceIdentity,
        baseline: Baseline,
        settings: StepSettings,
        report: Callable[[OtaStatus], None] = lambda status: None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        on_step: Callable[[str], None] = lambda point: None,
    ) -> None:
        self._control = control
        self._layout = layout
        self._store = layout.store
        self._trust = trust
        self._identity = identity
        self._baseline = baseline
        self._settings = settings
        self._report = report
        self._clock = clock
        self._on_step = on_step

    def apply(self, raw: bytes) -> OtaStatus:
        """Verify a received message and, if this device may apply it, run the update to its end."""
        state = self._store.load()
        if state.update is not None:  # a start always resumes first; this only guards misuse
            self.resume()
            state = self._store.load()
        try:
            manifest = self._verify(raw, state)
        except OtaError as exc:
            signed: Manifest | None = exc.manifest
            status = self._status("refused", signed and signed.kind, signed and signed.version, exc)
            if signed is None:
                # Junk (or a forgery) never takes the retained status of the last real update.
                log.warning("ota_unverified_refused", code=exc.code, error=exc.message)
            elif exc.code in QUIET_CODES:
                log.info("ota_ignored", code=exc.code, kind=signed.kind, version=signed.version, error=exc.message)
            else:
                log.warning("ota_refused", code=exc.code, kind=signed.kind, version=signed.version, error=exc.message)
                self._report(status)
            return status
        kind = manifest.kind
        active = state.of(kind)
        slot = other_slot(active.active)
        update = Update(
            kind=kind,
            version=manifest.version,
            envelope=raw.decode("utf-8"),
            slot=slot,
            previous=active.active,
            previous_version=active.active_version,
            step="download",
        )
        state = state.model_copy(update={"update": update})
        try:
            self._layout.reset(kind, slot)  # the inactive slot: clearing it touches nothing live
            self._store.save(state)
        except OSError as exc:  # a full disk: nothing was started, nothing changed; the fleet hears why
            return self._unstarted(kind, manifest.version, _unrecorded(exc, self._layout.root))
        log.info("ota_accepted", kind=kind, version=manifest.version, slot=slot)
        return self._run(state, manifest)

    def _unstarted(self, kind: Kind, version: int, error: OtaError) -> OtaStatus:
        log.error("ota_storage_failed", kind=kind, version=version, error=error.message)
        status = self._status("failed", kind, version, error)
        self._report(status)
        return status

    def resume(self) -> OtaStatus | None:
        """Finish or roll back the update a previous start left in progress; None if there was none."""
        state = self._store.load()
        update = state.update
        if update is None:
            return None
        log.warning("ota_resume", kind=update.kind, version=update.version, step=update.step, resumes=update.resumes)
        if update.step == "rollback":
            return self._finish_rollback(state)
        if update.resumes >= self._settings.max_resumes:
            error = OtaError(ErrorCode.CRASH_LOOP, f"interrupted {update.resumes + 1} times at step {update.step}")
            return self._rollback(state, error)
        # Before the switch nothing served: run it again from the download, which keeps what is already there (by
        # its hash), so that a slot cleared by a failure that could not be recorded is filled again.
        step = "download" if update.step in PRE_SWITCH_STEPS else update.step
        state = state.with_step(step, resumes=update.resumes + 1)
        try:
            self._layout.slot_dir(update.kind, update.slot).mkdir(parents=True, exist_ok=True)
            self._store.save(state)
        except OSError as exc:  # still full: the update waits, as it is, for a start with room
            return self._unstarted(update.kind, update.version, _unrecorded(exc, self._layout.root))
        try:
            # Verified again: the state file is not trusted more than the message it came from.
            manifest = self._verify(update.envelope.encode("utf-8"), state, resuming=update)
        except OtaError as exc:
            return self._rollback(state, exc)
        return self._run(state, manifest)

    def authenticate(self, raw: bytes) -> Manifest:
        """The manifest in `raw` if well formed and signed by a trusted key (OtaError otherwise);
        cheap, and safe from any thread: the worker sorts what arrives with it."""
        return authenticate(raw, self._trust, self._identity.agent_version)

    def _verify(self, raw: bytes, state: OtaState, resuming: Update | None = None) -> Manifest:
        manifest = verify(
            raw,
            self._trust,
            device_id=self._identity.device_id,
            groups=self._identity.groups,
            agent_version=self._identity.agent_version,
            now=self._clock(),
            last_versions=state.refused_versions(),
        )
        if resuming is not None and (manifest.kind, manifest.version) != (resuming.kind, resuming.version):
            raise OtaError(ErrorCode.MALFORMED, "the saved update does not match its own manifest")
        return manifest

    def _run(self, state: OtaState, manifest: Manifest) -> OtaStatus:
        """Run the steps from the persisted one on; every failure ends in a rollback, never in an exception."""
        work = steps.Steps(self._control, self._layout, self._baseline, self._settings)
        while True:
            update = state.update
            assert update is not None
            step = update.step
            self._report(self._status(step, update.kind, update.version))
            self._on_step(step)
            try:
                if step == "watch":
                    work.watch()
                    self._on_step("watch.done")
                    return self._commit(state)
                getattr(work, step)(manifest, update)
            except OtaError as exc:
                return self._rollback(state, exc)
            except Exception as exc:  # a full disk, a bad candidate (ValidationError, ModelError, ...) or a bug: undo
                return self._rollback(state, _full_disk(exc, self._layout.root) or self._crashed(step, update.kind, exc))
            self._on_step(f"{step}.done")
            following = self._advance(state, update)
            try:
                self._store.save(following)
            except OSError as exc:  # done but not recorded: undone as a failed step
                return self._rollback(state, _unrecorded(exc, self._layout.root))
            state = following
            if step == "switch":
                self._control.publish_status()

    @staticmethod
    def _crashed(step: str, kind: Kind, exc: Exception) -> OtaError:
        """A bad candidate (ValidationError, ModelError, ConfigError) or a bug in a step, under the step's code."""
        if not isinstance(exc, (ValueError, ModelError, ConfigError)):
            log.error("ota_step_crashed", step=step, exc_info=exc)
        code = _VALIDATE_CODES[kind] if step == "validate" else _DEFAULT_CODES[step]
        said = describe_validation_error(exc) if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"
        return OtaError(code, said)

    def _advance(self, state: OtaState, update: Update) -> OtaState:
        following = steps.NEXT_STEP[update.step]
        if update.step == "switch":
            # The slot pointer and the step move in one write: a start after it serves the new version.
            state = state.with_kind(update.kind, active=update.slot, active_version=update.version)
        return state.with_step(following)

    def _commit(self, state: OtaState) -> OtaStatus:
        update = state.update
        assert update is not None
        state = state.with_kind(update.kind, last_version=update.version)
        state = state.model_copy(update={"update": None})
        self._store.save(state)
        self._control.commit(update.kind)
        self._control.publish_status()
        log.info("ota_committed", kind=update.kind, version=update.version)
        status = self._status("committed", update.kind, update.version)
        self._report(status)
        return status

    def _rollback(self, state: OtaState, error: OtaError) -> OtaStatus:
        update = state.update
        assert update is not None
        if update.step in PRE_SWITCH_STEPS:
            # Nothing of the update ever served: forget it, then what was staged of it (its space too). A version
            # that failed is never tried again, unless the box's full disk failed it: then it may come again.
            full = isinstance(error, _DiskFull)
            failed = state.of(update.kind).failed_version if full else max(update.version, state.of(update.kind).failed_version)
            retry = "publish it again" if full else _used_up(update.version)
            forgotten = state.with_kind(update.kind, failed_version=failed).model_copy(update={"update": None})
            try:
                self._store.save(forgotten)
            except OSError:
                self._layout.clear(update.kind, update.slot)  # the staged files' space, then once more
                try:
                    self._store.save(forgotten)
                except OSError as exc:
                    retry = f"cannot record that ({exc.strerror or exc}): the next start runs it again"
            else:
                self._layout.clear(update.kind, update.slot)
            error = OtaError(error.code, f"{error.message}; {retry}")
            log.warning("ota_failed", kind=update.kind, version=update.version, step=update.step, code=error.code,
                        error=error.message, hint="nothing was switched; the version serving goes on")  # fmt: skip
            status = self._status("failed", update.kind, update.version, error)
            self._report(status)
            return status
        log.warning("ota_rollback", kind=update.kind, version=update.version, step=update.step, code=error.code,
                    error=error.message)  # fmt: skip
        state = state.with_step("rollback", error_code=error.code, error_message=error.message)
        try:
            self._store.save(state)
        except OSError:  # switched back all the same; the record stays at the step before (said in the status)
            pass
        return self._finish_rollback(state)

    def _finish_rollback(self, state: OtaState) -> OtaStatus:
        update = state.update
        assert update is not None
        self._report(self._status("rollback", update.kind, update.version))
        self._on_step("rollback")
        error = OtaError(update.error_code or ErrorCode.UNHEALTHY, update.error_message)
        try:
            steps.Steps(self._control, self._layout, self._baseline, self._settings).switch_back(update)
        except Exception as exc:
            # The state says `rollback` (where that could be recorded): the next start serves the previous version
            # and finishes here.
            log.exception("ota_rollback_failed", kind=update.kind, version=update.version)
            failure = OtaError(ErrorCode.SWITCH_FAILED, str(exc))
            status = self._status("rollback_failed", update.kind, update.version, failure)
            self._report(status)
            return status
        kind_state = state.of(update.kind)
        state = state.with_kind(
            update.kind,
            active=update.previous,
            active_version=update.previous_version,
            failed_version=max(update.version, kind_state.failed_version),
        )
        try:
            self._store.save(state.model_copy(update={"update": None}))
            retry = _used_up(update.version)
        except OSError as exc:
            retry = (f"cannot record that ({exc.strerror or exc}): the next start serves version {update.version} "
                     "again and runs its health window again, unless space is freed first")  # fmt: skip
        error = OtaError(error.code, f"{error.message}; {retry}")
        self._control.publish_status()
        status = self._status("rolled_back", update.kind, update.version, error)
        self._report(status)
        return status

    def _status(self, state: str, kind: Kind | None, version: int | None, error: OtaError | None = None) -> OtaStatus:
        return OtaStatus.make(self._identity.device_id, state, kind, version, error, self._control)


def _used_up(version: int) -> str:
    return f"version {version} is not tried again: sign a higher one"


class _DiskFull(OtaError):
    """A step failed by the box's full disk, not by the update: the version is not used up."""


def _full_disk(exc: BaseException, root: Path) -> OtaError | None:
    if not isinstance(exc, OSError) or exc.errno not in FULL_DISK_ERRNOS:
        return None
    return _DiskFull(ErrorCode.STORAGE_FAILED, f"the disk of {root} is full: {FULL_DISK_ADVICE}")


def _unrecorded(exc: OSError, root: Path) -> OtaError:
    return _full_disk(exc, root) or OtaError(ErrorCode.STORAGE_FAILED, f"cannot record the update's state: {exc.strerror or exc}")
