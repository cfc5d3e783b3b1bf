"""Ephemeral subjects and the envelope builder: the only place where a rule's
event gets an identity on the wire."""

from __future__ import annotations

import hashlib

from agent.core.events import Event
from agent.core.units import NS_PER_MS, NS_PER_S
from agent.wire.envelope import Envelope


def subject_id(secret: bytes, camera_id: str, track_id: int, pts_ns: int, rotation_s: int) -> str:
    """A salted, keyed hash of (camera, track) that changes every `rotation_s`.

    The key is a per-boot random secret that never leaves the process, so the
    id cannot be reversed to the tracker id, links nothing across cameras and
    nothing across rotation periods.
    """
    period = pts_ns // (rotation_s * NS_PER_S)
    data = f"{camera_id}\x00{period}\x00{track_id}".encode()
    return hashlib.blake2b(data, key=secret, digest_size=8).hexdigest()


# open situations whose subject is held for their `ended` event; a situation whose end never comes (its
# camera removed) is forgotten oldest first beyond this
MAX_OPEN_SITUATIONS = 4096


class EnvelopeBuilder:
    """Wraps rule events into envelopes with a per-boot sequence.

    `event_id` is `device:boot:seq`: a retry of the same envelope keeps it, so
    subscribers can de-duplicate. A situation's `ended` event carries the
    subject its `started` event had, even when the subject rotated between
    them, so a subscriber pairs the two by (camera, kind, zone, subject).
    """

    def __init__(self, device_id: str, boot_id: str, secret: bytes, rotation_s: int = 3600) -> None:
        if not 60 <= rotation_s <= 3600:
            raise ValueError(f"subject rotation of {rotation_s} s is outside 60..3600 s")
        self.device_id = device_id
        self.boot_id = boot_id
        self._secret = secret
        self._rotation_s = rotation_s
        self._seq = 0
        self._open: dict[tuple, str] = {}  # (camera, kind, zone, track) of a started situation -> its subject

    def build(self, event: Event) -> Envelope:
        self._seq += 1
        return Envelope(
            event_id=f"{self.device_id}:{self.boot_id}:{self._seq}",
            device_id=self.device_id,
            camera_id=event.camera_id,
            seq=self._seq,
            ts=event.pts_ns // NS_PER_MS,
            subject=self._subject(event),
            body=event.body,
        )

    def _subject(self, event: Event) -> str | None:
        if event.track_id is None:
            return None
        state = getattr(event.body, "state", None)  # None: not a situation (a crossing, a count)
        key = (event.camera_id, event.body.kind, getattr(event.body, "zone_id", None), event.track_id)
        if state == "ended" and key in self._open:
            return self._open.pop(key)
        subject = subject_id(self._secret, event.camera_id, event.track_id, event.pts_ns, self._rotation_s)
        if state != "started":
            return subject
        self._open[key] = subject
        if len(self._open) > MAX_OPEN_SITUATIONS:
            del self._open[next(iter(self._open))]
        return subject
