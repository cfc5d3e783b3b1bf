"""MQTT topic names: `edge/v1/{site}/{device}/...`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    site: str
    device: str

    @property
    def root(self) -> str:
        return f"edge/v1/{self.site}/{self.device}"

    def event(self, kind: str) -> str:
        return f"{self.root}/events/{kind}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def health(self) -> str:
        return f"{self.root}/health"

    @property
    def doctor(self) -> str:
        """Diagnostics only: `edge-agent doctor` publishes a probe here and reads it back."""
        return f"{self.root}/doctor"

    @property
    def ota_status(self) -> str:
        return f"{self.root}/ota/status"
