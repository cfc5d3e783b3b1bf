"""A synthetic agent for fault tests: the agent's own Outbox, MqttLink,
EnvelopeBuilder, status and health, fed by a fixed-rate event generator
instead of cameras and a model, so a test controls the event rate.

    python -m tests.support.event_source --state DIR --port N --rate-hz R [--burst N] [--duration-s S]

`--burst N` first commits N events as fast as it can (a long outage's backlog,
when the broker is down), then goes on at the live rate.

What it writes in DIR, for the verdict:
- committed.log: "boot_id last_seq" after every outbox commit: every event of
  that boot up to last_seq is durable (a line is written only after `put`
  returned, and a SIGKILL keeps what the kernel already has);
- acked.log: "wall_s event_id" for every row the broker acknowledged, written
  before the row is deleted: it tells which broker instance took an event over;
- health.log: every health message as a JSON line, also while disconnected.
It exits 0 on SIGTERM once the outbox is empty or `--drain-s` has passed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from agent.analytics.kinds.intrusion import IntrusionBody
from agent.core.events import Event
from agent.io.health import HealthLoop, build_health
from agent.io.metrics import ProcessUsage
from agent.io.mqtt import MqttLink
from agent.io.outbox import Outbox
from agent.settings.config import BrokerSettings
from agent.wire.envelope import encode
from agent.wire.privacy import EnvelopeBuilder
from agent.wire.status import Status, to_bytes
from agent.wire.topics import Topics

TICK_S = 0.01
BURST_BATCH = 500


class LoggedOutbox(Outbox):
    """The agent's outbox, also logging which events the broker acknowledged."""

    def __init__(self, path: Path, ack_log: Path, **kwargs) -> None:
        super().__init__(path, **kwargs)
        self._ack_fd = os.open(ack_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def ack(self, row_ids: Iterable[int]) -> None:
        ids = list(row_ids)
        if ids:
            with self._lock:
                marks = ",".join("?" * len(ids))
                eids = [r[0] for r in self._db.execute(f"SELECT event_id FROM outbox WHERE id IN ({marks})", ids)]
            now = time.time()
            os.write(self._ack_fd, "".join(f"{now:.3f} {e}\n" for e in eids).encode())
        super().ack(ids)


def event_rows(builder: EnvelopeBuilder, topics: Topics, n: int, now_ns: int) -> list[tuple[str, str, bytes]]:
    """`n` intrusion events as outbox rows (event_id, topic, payload), built like the pipeline builds them."""
    rows = []
    for _ in range(n):
        track = secrets.randbelow(50)
        body = IntrusionBody(zone_id="z1", state="started", class_name="person", point=(0.5, 0.5), duration_ms=1000)
        env = builder.build(Event("cam1", now_ns, body, track_id=track))
        rows.append((env.event_id, topics.event(env.kind), encode(env)))
    return rows


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--outbox-dir", type=Path, default=None, help="where the outbox lives (default: --state)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate-hz", type=float, required=True, help="events per second")
    p.add_argument("--burst", type=int, default=0, help="events committed as fast as possible before the live rate")
    p.add_argument("--duration-s", type=float, default=None, help="stop producing after this long")
    p.add_argument("--drain-s", type=float, default=60.0, help="on SIGTERM, wait this long for the outbox to empty")
    p.add_argument("--health-interval-s", type=float, default=1.0)
    p.add_argument("--device", default="synth-1")
    args = p.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    args.state.mkdir(parents=True, exist_ok=True)
    boot_id = secrets.token_hex(8)
    topics = Topics("site-1", args.device)
    builder = EnvelopeBuilder(args.device, boot_id, secrets.token_bytes(32))
    offline = to_bytes(Status(state="offline", device_id=args.device, boot_id=boot_id, ts=0))
    committed = os.open(args.state / "committed.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    broker = BrokerSettings(host="127.0.0.1", port=args.port, keepalive_s=5)
    outbox = LoggedOutbox((args.outbox_dir or args.state) / "outbox.sqlite", args.state / "acked.log", max_bytes=2**30, max_age_s=86400)
    with outbox, MqttLink(broker, args.device, outbox, topics.status, offline) as link:
        link.set_retained(topics.status, to_bytes(Status(state="online", device_id=args.device, boot_id=boot_id, ts=0)))
        usage = ProcessUsage()

        def snapshot():
            return build_health(
                args.device, boot_id, [], {}, outbox.stats(), link.reconnects, usage.sample(),
                detect_errors=0, mqtt_rejected=link.rejected, ota_refused=0,
            )  # fmt: skip

        health_log = (args.state / "health.log").open("ab", buffering=0)

        def publish(health):
            link.publish_now(topics.health, to_bytes(health))
            health_log.write(to_bytes(health) + b"\n")

        (args.state / "running.pid").write_text(str(os.getpid()))  # SIGTERM is handled from here on
        total = 0  # the builder numbers events 1, 2, ... per boot

        def commit(n: int) -> None:
            nonlocal total
            outbox.put(event_rows(builder, topics, n, time.time_ns()))
            total += n
            os.write(committed, f"{boot_id} {total}\n".encode())

        with HealthLoop(snapshot, publish, args.health_interval_s):
            for done in range(0, args.burst, BURST_BATCH):
                commit(min(BURST_BATCH, args.burst - done))
            start, made = time.monotonic(), 0
            while not stop.is_set() and (args.duration_s is None or time.monotonic() - start < args.duration_s):
                due = int((time.monotonic() - start) * args.rate_hz) - made
                if due > 0:
                    commit(due)
                    made += due
                stop.wait(TICK_S)
            stop.wait()  # produced all it should: keep delivering until told to stop
            deadline = time.monotonic() + args.drain_s
            while outbox.stats().depth and time.monotonic() < deadline:
                time.sleep(0.05)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
