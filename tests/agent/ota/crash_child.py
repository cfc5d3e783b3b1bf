"""Child process for the crash tests: a live device (tests/support/live_agent.py) that starts from the persisted OTA state,
resumes what it finds, optionally applies one message, and can block at a step to be SIGKILLed.

Prints one JSON line `{"serving": ...}` once its model is open, `AT <point>` when it blocks, and
`{"final": ...}` when done.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.ota.control import Baseline, ModelRef
from agent.ota.report import OtaStatus
from agent.ota.slots import SlotLayout
from agent.settings.trust import TrustStore
from agent.settings.zones import ZonesDoc
from tests.agent.ota.device import make_applier
from tests.agent.ota.docs import YOLOX_JSON, zones_doc
from tests.support.live_agent import LiveAgent


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--root", "--golden", "--models", "--clip", "--trusted"):
        parser.add_argument(name, required=True)
    parser.add_argument("--message", default="")
    parser.add_argument("--kill-at", default="")
    parser.add_argument("--bad-sha256", default="")
    args = parser.parse_args()
    # Logs from other threads must not interleave with the protocol lines on stdout.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    trust = TrustStore([Ed25519PublicKey.from_public_bytes(base64.b64decode(args.trusted))])
    layout = SlotLayout(Path(args.root))
    state = layout.store.load()
    baseline = Baseline(ModelRef(YOLOX_JSON, Path(args.models)), ZonesDoc.model_validate(zones_doc(1)), {})
    # What a starting agent serves is decided by the persisted state alone.
    with LiveAgent(Path(args.clip), baseline, layout, run_detector=False, bad_sha256=args.bad_sha256) as live:
        control = live.control
        print(json.dumps({"serving": control.live_model_sha256(), "slot": state.served_slot("model")}), flush=True)

        def block_at(point: str) -> None:
            if point == args.kill_at:
                print(f"AT {point}", flush=True)
                time.sleep(3600)

        reports: list[OtaStatus] = []
        applier = make_applier(control, layout.root, trust, baseline, Path(args.golden), reports.append, block_at)
        applier.resume()
        if args.message:
            applier.apply(Path(args.message).read_bytes())
        print(json.dumps({"final": control.live_model_sha256(), "states": [r.state for r in reports]}), flush=True)


if __name__ == "__main__":
    main()
