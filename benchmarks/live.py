"""The live stack a run needs, on loopback: Mosquitto, the cameras (files paced at real time or
GStreamer RTSP servers) and a subscriber that stamps each message when it arrives.

The services are the test suite's own (testbed/services.py), so the
benchmark drives the same real broker and RTSP server the integration tests do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt

from testbed.services import Mosquitto, RtspServer, Subscriber

Source = Literal["file", "rtsp"]


@dataclass(frozen=True, slots=True)
class Stamped:
    """A message and when the subscriber got it: UTC ns (to compare with an envelope's `ts`) and monotonic s."""

    recv_ns: int
    recv_mono: float
    topic: str
    payload: bytes


class StampingSubscriber(Subscriber):
    """The tests' Subscriber, keeping every message with its arrival time instead of only its content."""

    def __init__(self, host: str, port: int, topic_filter: str) -> None:
        self.stamped: list[Stamped] = []
        super().__init__(host, port, topic_filter, qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        # stamp first: everything after this line is the benchmark's own cost, not the agent's
        self.stamped.append(Stamped(time.time_ns(), time.monotonic(), msg.topic, bytes(msg.payload)))


@contextmanager
def broker(workdir: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(workdir / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def cameras(source: Source, clip: Path, count: int, workdir: Path, loop: bool = True) -> Iterator[list[dict]]:
    """`count` camera entries of the agent config, all showing `clip`.

    file: the clip replayed at its own frame rate, looping (`loop`), dropping the oldest
    frame when the agent lags (like a live camera); its frames carry their
    scheduled time, so end to end includes decode and queueing.
    rtsp: one GStreamer RTSP server per camera (each re-encodes the clip to
    H.264 on this same box, which costs CPU the agent then lacks); the reader
    stamps a frame when OpenCV returns it, so end to end starts after decode. A server
    plays the clip once per connection (vtest: 80 s), then the camera reconnects.
    """
    if source == "file":
        yield [{"id": f"cam{i}", "url": str(clip), "replay": "realtime", "loop": loop} for i in range(count)]
        return
    servers: list[RtspServer] = []
    try:
        for i in range(count):
            servers.append(RtspServer(clip, f"cam{i}", workdir / f"rtsp-cam{i}.log"))
            servers[-1].start()
        yield [{"id": f"cam{i}", "url": s.url} for i, s in enumerate(servers)]
    finally:
        for server in servers:
            server.stop()
