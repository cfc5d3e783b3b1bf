"""The long delivery runs (`make soak`): a 100,000-event backlog drained while
live events keep flowing, and many broker and agent kills. Their figures are
printed (run with -s) and belong in the closing note."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.test_delivery_faults import finish
from tests.support.consumer import DedupConsumer
from tests.support.delivery import BrokerLife, SyntheticAgent

pytestmark = [pytest.mark.integration, pytest.mark.soak]

BACKLOG = 100_000
LIVE_RATE_HZ = 200.0


def test_a_100k_backlog_drains_at_5x_the_live_rate_with_flat_memory(tmp_path, mosquitto):
    consumer = DedupConsumer(mosquitto.host, mosquitto.port)
    mosquitto.stop()  # the long outage
    agent = SyntheticAgent(tmp_path / "agent", mosquitto.port, rate_hz=LIVE_RATE_HZ, burst=BACKLOG)
    agent.start()
    try:
        while len(agent.committed()) < BACKLOG:
            time.sleep(0.5)
        time.sleep(2.5)  # two health reports with the whole backlog waiting
        before = agent.health()[-1]
        mosquitto.start()
        t0 = time.monotonic()
        while (depth := agent.health()[-1].outbox.depth) > 2 * LIVE_RATE_HZ:
            assert time.monotonic() - t0 < 600, f"still {depth} waiting"
            time.sleep(0.2)
        drain_s = time.monotonic() - t0
        delivered_during_drain = len(consumer.events)
        time.sleep(5)  # live only, backlog gone
        result = finish(agent, consumer, None)
    finally:
        consumer.close()
    reports = agent.health()
    rss = [h.rss_mb for h in reports]
    figures = {
        "backlog_events": before.outbox.depth,
        "backlog_mb": round(before.outbox.size_bytes / 2**20, 1),
        "live_rate_hz": LIVE_RATE_HZ,
        "drain_s": round(drain_s, 1),
        "delivered_per_s_while_draining": round(delivered_during_drain / drain_s),
        "backlog_shrink_per_s": round(before.outbox.depth / drain_s),
        "rss_mb_with_backlog": before.rss_mb,
        "rss_mb_min_max_over_run": [min(rss), max(rss)],
        "rss_mb_after_drain": reports[-1].rss_mb,
        **result.__dict__,
    }
    print("backlog soak:", json.dumps(figures))
    assert result.lost_by_agent == 0 and result.delivered == result.committed
    assert delivered_during_drain / drain_s >= 5 * LIVE_RATE_HZ
    assert max(rss) - min(rss) < 40, "memory grows with the backlog"


def test_many_broker_and_agent_kills(tmp_path, mosquitto):
    consumer = DedupConsumer(mosquitto.host, mosquitto.port)
    time.sleep(5.5)  # one autosave: the consumer's session is in the broker's snapshot
    life = BrokerLife(mosquitto)
    agent = SyntheticAgent(tmp_path / "agent", mosquitto.port, rate_hz=500)
    agent.start()
    try:
        for cycle in range(12):
            time.sleep(2.0 + cycle % 3)
            if cycle % 3 == 2:
                agent.kill()
                agent.start()
            else:
                life.sigkill()
                time.sleep(0.5 + cycle % 4)
                life.start()
        time.sleep(3)
        result = finish(agent, consumer, life)
    finally:
        consumer.close()
    print("kill soak:", result)
    assert result.lost_by_agent == 0
