"""Child process for the crash tests: a harness device that starts from the persisted OTA state,
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
from agent.ota.slots import SlotLayout, served_model, served_zones
from agent.ota.trust import TrustStore
from agent.settings.zones import ZonesDoc
from tests.agent.ota.device import make_applier
from tests.agent.ota.harness import YOLOX_JSON, HarnessAgent, zones_doc


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
    model, zones = served_model(layout, state, baseline), served_zones(layout, state, baseline)
    with HarnessAgent(Path(args.clip), model, zones, run_detector=False, bad_sha256=args.bad_sha256) as harness:
        print(json.dumps({"serving": harness.live_model_sha256(), "slot": state.served_slot("model")}), flush=True)

        def block_at(point: str) -> None:
            if point == args.kill_at:
                print(f"AT {point}", flush=True)
                time.sleep(3600)

        reports: list[OtaStatus] = []
        applier = make_applier(harness, layout.root, trust, baseline, Path(args.golden), reports.append, block_at)
        applier.resume()
        if args.message:
            applier.apply(Path(args.message).read_bytes())
        print(json.dumps({"final": harness.live_model_sha256(), "states": [r.state for r in reports]}), flush=True)


if __name__ == "__main__":
    main()
