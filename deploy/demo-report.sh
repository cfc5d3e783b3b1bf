#!/usr/bin/env bash
# What a subscriber received during the demo: counts per topic, the first events and the
# last line count. Exits 1 when no event arrived. Usage: demo-report.sh RECEIVED_FILE
# (one `topic payload` line per message, as `mosquitto_sub -F '%t %p'` writes them).
# No early-closing reader in a pipe (`grep | head`): under pipefail the writer's SIGPIPE
# would fail the whole demo once enough events arrived.
set -euo pipefail
received="$1"

events=$(grep -c '/events/' "$received" || true)
echo "a subscriber on edge/v1/# received $events events:"
[ "$events" -gt 0 ] || { echo "no event arrived" >&2; exit 1; }
grep '/events/' "$received" | awk '{print $1}' | sort | uniq -c
echo
echo "first events:"
grep -m 5 '/events/' "$received" || true
echo
echo "last line count:"
grep '/events/line_count' "$received" | tail -n 1 || true
