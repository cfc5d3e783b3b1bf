"""The checks a device runs on a received OTA message, ordered so that nothing unsigned is trusted.

Pure: the caller passes the clock, its identity, its version and the highest
version applied per kind; `verify` reads nothing else and changes nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from pydantic import ValidationError

from agent.ota.canonical import canonical_json_bytes, parse_json_strict
from agent.ota.errors import ErrorCode, OtaError
from agent.ota.manifest import MAX_MESSAGE_BYTES, Manifest, SignedManifest
from agent.ota.semver import SemverKey, semver_key
from agent.settings.errors import describe_validation_error
from agent.settings.trust import TrustStore

# A box without an RTC battery drifts until NTP syncs: a manifest issued a little "in the future" is normal.
CLOCK_SKEW_S = 300.0


def verify(
    raw: bytes,
    trust: TrustStore,
    *,
    device_id: str,
    groups: Iterable[str],
    agent_version: str,
    now: datetime,
    last_versions: Mapping[str, int],
    clock_skew_s: float = CLOCK_SKEW_S,
) -> Manifest:
    """Return the manifest in `raw` (a `SignedManifest` envelope) if this device may apply it.

    Raises OtaError with one code per cause. Steps, each reading only what the
    ones before it vouched for:

    1. the envelope: size cap, JSON, shape (`malformed`); no signature (`unsigned`);
    2. the signatures over the manifest's exact bytes: none by a trusted key
       (`unknown_key`), none that verifies (`bad_signature`);
    3. the signed bytes: canonical JSON (`malformed`); `min_agent_version`
       (`agent_too_old`), read before the schema so that an agent too old
       to know a newer manifest format says so instead of `malformed`;
       then the schema (`malformed`);
    4. applicability: `wrong_target`, then `old_version` / `same_version`,
       then `expired` / `not_yet_valid`. Target and version come first
       because they are the benign refusals (a retained message for another
       device, or one already applied) that the applier may ignore quietly.

    `now` must be timezone-aware; `agent_version` must be semver;
    `last_versions` maps a kind to the highest version applied (absent: none).
    Those are the caller's values, so a bad one raises ValueError, not OtaError.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    manifest = authenticate(raw, trust, agent_version)
    try:
        _check_applicable(manifest, device_id, groups, now, last_versions, timedelta(seconds=clock_skew_s))
    except OtaError as exc:
        exc.manifest = manifest  # signed: its refusal may be reported with its kind and version
        raise
    return manifest


def authenticate(raw: bytes, trust: TrustStore, agent_version: str) -> Manifest:
    """Steps 1 to 3 of `verify`: the manifest in `raw` if it is well formed and signed by a
    trusted key, whatever the device's state. Cheap checks first (size, JSON, shape, then
    one signature check per trusted signature), so a flood of junk costs little."""
    return _parse_manifest(signed_bytes(raw, trust), agent_version, semver_key(agent_version))


def signed_bytes(raw: bytes, trust: TrustStore) -> bytes:
    """Steps 1 and 2 of `verify`: the manifest's bytes in `raw` if a trusted key signed them (the
    publisher's check before a rollout, with the devices' trust file)."""
    return _check_signatures(_parse_envelope(raw), trust)


def _parse_envelope(raw: bytes) -> SignedManifest:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise OtaError(ErrorCode.MALFORMED, f"message is {len(raw)} bytes, more than {MAX_MESSAGE_BYTES}")
    try:
        document = parse_json_strict(raw)
    except ValueError as exc:
        raise OtaError(ErrorCode.MALFORMED, f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise OtaError(ErrorCode.MALFORMED, "message is not a JSON object")
    # A bare manifest, or an envelope stripped of its signatures, is unsigned rather than malformed.
    if document.get("signatures") is None or document["signatures"] == []:
        raise OtaError(ErrorCode.UNSIGNED, "message carries no signature")
    try:
        return SignedManifest.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise OtaError(ErrorCode.MALFORMED, f"bad envelope: {describe_validation_error(exc)}") from exc


def _check_signatures(envelope: SignedManifest, trust: TrustStore) -> bytes:
    try:
        manifest_bytes = envelope.manifest.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise OtaError(ErrorCode.MALFORMED, "manifest text is not valid Unicode") from exc
    trusted = [(s, key) for s in envelope.signatures if (key := trust.get(s.key_id)) is not None]
    if not trusted:
        key_ids = sorted({s.key_id for s in envelope.signatures})
        raise OtaError(ErrorCode.UNKNOWN_KEY, f"signed only by keys not in the trust file: {key_ids}")
    for signature, key in trusted:
        try:
            key.verify(base64.b64decode(signature.sig, validate=True), manifest_bytes)
        except (InvalidSignature, ValueError):  # binascii.Error (bad base64) is a ValueError
            continue
        return manifest_bytes
    raise OtaError(ErrorCode.BAD_SIGNATURE, f"no valid signature by trusted keys {[s.key_id for s, _ in trusted]}")


def _parse_manifest(manifest_bytes: bytes, agent_version: str, agent_key: SemverKey) -> Manifest:
    try:
        document = parse_json_strict(manifest_bytes)
        canonical = canonical_json_bytes(document)
    except ValueError as exc:
        raise OtaError(ErrorCode.MALFORMED, f"manifest is not JSON: {exc}") from exc
    # One byte form per manifest: with duplicate keys refused, the signed bytes mean one thing to every parser.
    if canonical != manifest_bytes:
        raise OtaError(ErrorCode.MALFORMED, "manifest is not canonical JSON (sorted keys, no spaces, UTF-8)")
    required = document.get("min_agent_version") if isinstance(document, dict) else None
    required_key = _semver_or_none(required) if isinstance(required, str) else None
    if required_key is not None and agent_key < required_key:
        raise OtaError(ErrorCode.AGENT_TOO_OLD, f"needs agent {required}, this is {agent_version}")
    try:
        return Manifest.model_validate_json(manifest_bytes, strict=True)
    except ValidationError as exc:
        raise OtaError(ErrorCode.MALFORMED, f"bad manifest: {describe_validation_error(exc)}") from exc


def _semver_or_none(version: str) -> SemverKey | None:
    try:
        return semver_key(version)
    except ValueError:  # left for the schema to report as malformed
        return None


def _check_applicable(
    manifest: Manifest,
    device_id: str,
    groups: Iterable[str],
    now: datetime,
    last_versions: Mapping[str, int],
    clock_skew: timedelta,
) -> None:
    if not manifest.target.matches(device_id, groups):
        raise OtaError(ErrorCode.WRONG_TARGET, f"not for device {device_id!r} nor its groups")
    last = last_versions.get(manifest.kind, 0)
    if manifest.version < last:
        raise OtaError(ErrorCode.OLD_VERSION, f"{manifest.kind} version {manifest.version} < {last}, the last applied or failed")
    if manifest.version == last:
        raise OtaError(ErrorCode.SAME_VERSION, f"{manifest.kind} version {manifest.version} was already applied or failed")
    if now >= manifest.expires:
        raise OtaError(ErrorCode.EXPIRED, f"expired at {manifest.expires.isoformat()}")
    if manifest.issued_at > now + clock_skew:
        raise OtaError(ErrorCode.NOT_YET_VALID, f"issued at {manifest.issued_at.isoformat()}, in the future")
