"""Fuzzing the applier's inputs: whatever arrives, `apply` returns a status, never raises, and applies
nothing unless the zones document really is valid for this device."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.settings.config import ConfigError
from agent.settings.zones import ZonesDoc
from tests.agent.ota.device import Device
from tests.agent.ota.docs import zones_doc, zones_manifest_doc
from tests.agent.ota.manifests import sign_doc
from tests.agent.ota.test_fuzz import JSON_VALUES

FUZZ = settings(
    max_examples=60, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PATHS = [
    ("version",), ("zones",), ("lines",), ("analysis",), ("zones", 0), ("zones", 0, "id"), ("zones", 0, "camera"),
    ("zones", 0, "polygon"), ("zones", 0, "polygon", 1), ("zones", 0, "polygon", 1, 0), ("zones", 0, "classes"),
    ("zones", 0, "occupancy"), ("zones", 0, "intrusion"),
]


def _mutate(doc: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target: Any = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


@pytest.fixture
def fuzz_device(device: Callable[..., Device]) -> Device:
    return device(run_detector=False, health_window_s=0.05, health_min_frames=0)


@FUZZ
@given(path=st.sampled_from(PATHS), value=JSON_VALUES)
def test_fuzzed_zones_apply_only_when_valid(
    fuzz_device: Device, fleet_key: Ed25519PrivateKey, path: tuple, value: Any
) -> None:
    dev, versions = fuzz_device, _versions
    doc = _mutate(zones_doc(2), path, value)
    before = dev.live.control.live_zones_version()
    status = dev.applier.apply(sign_doc(zones_manifest_doc(doc, next(versions)), fleet_key))
    if status.state == "committed":
        dev.live.control.check_zones(ZonesDoc.model_validate(doc))  # it was valid: applying it was right
        assert status.zones_version == doc.get("version", 1)
    else:
        assert status.error is not None and status.error.code in {"zones_invalid", "malformed"}, status
        assert dev.live.control.live_zones_version() == before
        assert dev.state().update is None


_versions = itertools.count(3)


@FUZZ
@given(raw=st.binary(max_size=300) | JSON_VALUES.map(lambda v: repr(v).encode()))
def test_arbitrary_messages_are_refused_and_change_nothing(fuzz_device: Device, raw: bytes) -> None:
    before = fuzz_device.state()
    status = fuzz_device.applier.apply(raw)
    assert status.state == "refused" and status.error is not None
    assert fuzz_device.state() == before


def test_the_live_check_refuses_unknown_cameras(fuzz_device: Device) -> None:
    doc = zones_doc(2)
    doc["zones"][0]["camera"] = "cam9"
    with pytest.raises(ConfigError):
        fuzz_device.live.control.check_zones(ZonesDoc.model_validate(doc))
