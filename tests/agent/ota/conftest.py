"""OTA fixtures: the fleet key, a key nobody trusts, the device's trust store, and verify() as that device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.ota import Manifest, TrustStore, verify
from tests.agent.ota.manifests import AGENT_VERSION, DEVICE_ID, GROUPS, NOW


@pytest.fixture(scope="session")
def fleet_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def stranger_key() -> Ed25519PrivateKey:
    """A well-formed key that no device trusts."""
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def trust(fleet_key: Ed25519PrivateKey) -> TrustStore:
    return TrustStore([fleet_key.public_key()])


@pytest.fixture(scope="session")
def check(trust: TrustStore) -> Callable[..., Manifest]:
    """verify() as the test device: DEVICE_ID in GROUPS, AGENT_VERSION, at NOW, nothing applied yet."""

    def run(raw: bytes, **overrides: Any) -> Manifest:
        kwargs: dict[str, Any] = {
            "device_id": DEVICE_ID,
            "groups": GROUPS,
            "agent_version": AGENT_VERSION,
            "now": NOW,
            "last_versions": {},
        }
        kwargs.update(overrides)
        return verify(raw, trust, **kwargs)

    return run
