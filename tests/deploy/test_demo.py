"""The demo's report on what a subscriber received, and `make test ARGS=...`."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "deploy" / "demo-report.sh"


def _report(received: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPORT), str(received)], capture_output=True, text=True, timeout=60)


def test_report_of_many_events_exits_zero(tmp_path: Path) -> None:
    # Far more than a pipe holds: a `grep | head -5` under pipefail dies of SIGPIPE (exit 141) here.
    received = tmp_path / "received.txt"
    lines = [f"edge/v1/s/d/events/line_count {{\"seq\": {i}}}" for i in range(100_000)]
    lines[3:3] = ["edge/v1/s/d/status {\"state\": \"online\"}", "edge/v1/s/d/events/intrusion {\"seq\": -1}"]
    received.write_text("\n".join(lines) + "\n")
    result = _report(received)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "received 100001 events" in out
    assert "100000 edge/v1/s/d/events/line_count" in out and "1 edge/v1/s/d/events/intrusion" in out
    first = out.split("first events:\n")[1].split("\n\n")[0].splitlines()
    assert len(first) == 5 and first[3] == 'edge/v1/s/d/events/intrusion {"seq": -1}'
    assert out.rstrip().endswith('edge/v1/s/d/events/line_count {"seq": 99999}')


def test_report_without_events_fails(tmp_path: Path) -> None:
    received = tmp_path / "received.txt"
    received.write_text('edge/v1/s/d/status {"state": "online"}\n')
    result = _report(received)
    assert result.returncode == 1
    assert "received 0 events" in result.stdout and "no event arrived" in result.stderr


def test_make_test_passes_args_to_pytest() -> None:
    result = subprocess.run(
        ["make", "-n", "test", "ARGS=tests/deploy -k demo -x"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert ".venv/bin/python -m pytest tests/deploy -k demo -x" in result.stdout.splitlines()
