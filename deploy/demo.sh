#!/usr/bin/env bash
# The main job on the embedded defaults: a local Mosquitto on loopback, the agent
# on the sample clip with the example zones, and the events a subscriber received.
# Exits non-zero when no event arrived.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SHARED:-$(cd .. && pwd)/shared}"
BIN=.venv/bin

# the model: from a local models folder when there is one, else its upstream URL (SHA-256 checked)
export EDGE_AGENT_MODELS_DIR="$PWD/var/models"
$BIN/edge-agent models fetch --manifest models/yolox_nano.json --dest var/models --search "$SHARED/models" >/dev/null
export EDGE_AGENT_MEDIA_DIR="${EDGE_AGENT_MEDIA_DIR:-$SHARED/media}"

work=$(mktemp -d)
port=$($BIN/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker=$!
trap 'kill $sub $broker 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do mosquitto_sub -h 127.0.0.1 -p "$port" -t '$SYS/#' -C 1 -W 1 >/dev/null 2>&1 && break; sleep 0.1; done

mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv5 -q 1 -t 'edge/v1/#' -F '%t %p' >"$work/received.txt" &
sub=$!
sleep 0.5

echo "running the agent on $EDGE_AGENT_MEDIA_DIR/vtest.avi (broker 127.0.0.1:$port) ..."
EDGE_AGENT_BROKER__PORT="$port" EDGE_AGENT_STATE_DIR="$work/state" \
  $BIN/edge-agent run --config examples/vtest.yaml 2>"$work/agent.log" || { tail -20 "$work/agent.log"; exit 1; }
sleep 1

events=$(grep -c '/events/' "$work/received.txt" || true)
echo
echo "a subscriber on edge/v1/# received $events events:"
grep '/events/' "$work/received.txt" | awk '{print $1}' | sort | uniq -c
echo
echo "first events:"
grep '/events/' "$work/received.txt" | head -5
echo
echo "last line count:"
grep '/events/line_count' "$work/received.txt" | tail -1
[ "$events" -gt 0 ] || { echo "no event arrived" >&2; exit 1; }
