"""Fault-test plumbing: the synthetic agent as a process, and an honest verdict.

The verdict separates two kinds of missing events:
- lost by the agent: committed to the outbox and never acknowledged by any
  broker, or acknowledged by a broker that was never SIGKILLed afterwards.
  The agent's promise is that this is 0.
- lost by a SIGKILLed broker: acknowledged (PUBACK) by a broker instance that
  was later killed with SIGKILL, and never delivered. Mosquitto persists by
  periodic snapshot (`autosave_interval`), so a crash loses what it accepted
  since the last one. After the PUBACK the event is the broker's to keep: the
  agent cannot know, and no edge-side design can fix it; durability there
  needs a broker that persists before acknowledging (or a replicated one).
"""

from __future__ import annotations

import bisect
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.wire.status import Health
from testbed.agent_process import REPO
from testbed.services import Mosquitto
from tests.support.consumer import DedupConsumer

START_TIMEOUT_S = 30.0


class SyntheticAgent:
    """tests/support/event_source.py as a child process, restartable on the same state folder."""

    def __init__(
        self, state: Path, port: int, rate_hz: float, burst: int = 0, device: str = "synth-1", outbox_dir: Path | None = None
    ) -> None:
        self.state, self.device = state, device
        self._args = ["--state", str(state), "--port", str(port), "--rate-hz", str(rate_hz), "--device", device]
        self._args += ["--outbox-dir", str(outbox_dir or state)]
        self._burst = burst
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        burst, self._burst = self._burst, 0  # the backlog is made once, not at every restart
        with (self.state / "agent.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.event_source", *self._args, "--burst", str(burst)],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        pid_file = self.state / "running.pid"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (pid_file.exists() and pid_file.read_text() == str(self.proc.pid)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"synthetic agent did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout_s: float = 120) -> int:
        """SIGTERM: stop producing, deliver what is left, exit."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def committed(self) -> set[str]:
        """Every event_id the outbox committed, over all boots."""
        last: dict[str, int] = {}
        for line in (self.state / "committed.log").read_text().splitlines():
            boot, seq = line.split()
            last[boot] = max(last.get(boot, 0), int(seq))
        return {f"{self.device}:{boot}:{i}" for boot, n in last.items() for i in range(1, n + 1)}

    def acked_at(self) -> dict[str, float]:
        """event_id -> wall time of its (first) broker acknowledgement."""
        acked: dict[str, float] = {}
        path = self.state / "acked.log"
        for line in path.read_text().splitlines() if path.exists() else []:
            t, event_id = line.split()
            acked.setdefault(event_id, float(t))
        return acked

    def health(self) -> list[Health]:
        path = self.state / "health.log"
        return [Health.model_validate_json(x) for x in path.read_text().splitlines() if x.strip()]

    def log_tail(self) -> str:
        return (self.state / "agent.log").read_text(errors="replace")[-3000:]


@dataclass
class BrokerLife:
    """When each instance of a broker started, and which ones were SIGKILLed.

    An acknowledgement belongs to the instance that started last before it was
    logged: the agent logs a PUBACK a little after it arrived, possibly after
    the kill, but never after the next instance started.
    """

    broker: Mosquitto
    starts: list[float] = field(default_factory=lambda: [0.0])
    killed: set[int] = field(default_factory=set)  # indices into starts

    def sigkill(self) -> None:
        self.broker.kill()
        self.killed.add(len(self.starts) - 1)

    def start(self) -> None:
        self.broker.start()
        self.starts.append(time.time())

    def acked_by_a_killed_instance(self, t: float) -> bool:
        return bisect.bisect_right(self.starts, t) - 1 in self.killed


@dataclass(frozen=True)
class Verdict:
    committed: int
    delivered: int
    duplicates: int
    lost_by_agent: int
    lost_by_killed_broker: int

    def __str__(self) -> str:
        return json.dumps(self.__dict__)


def verdict(agent: SyntheticAgent, consumer: DedupConsumer, missing: set[str], life: BrokerLife | None) -> Verdict:
    committed = agent.committed()
    acked = agent.acked_at()
    by_broker = {e for e in missing if life is not None and e in acked and life.acked_by_a_killed_instance(acked[e])}
    return Verdict(
        committed=len(committed),
        delivered=len(committed) - len(missing),
        duplicates=consumer.received - len(consumer.events),
        lost_by_agent=len(missing - by_broker),
        lost_by_killed_broker=len(by_broker),
    )
