#!/usr/bin/env bash
# The main job on the embedded defaults: a local Mosquitto on loopback, the agent
# on the sample clip with the example zones, and the events a subscriber received.
# Exits non-zero when no event arrived. Takes about a minute after `make setup`
# (the agent reads vtest.avi's 795 frames as fast as the detector takes them).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SHARED:-$(cd .. && pwd)/shared}"
BIN=.venv/bin
start=$SECONDS
step() { printf '[demo %3ds] %s\n' "$((SECONDS - start))" "$*"; }

# the model: from a local models folder when there is one, else its upstream URL (SHA-256 checked)
step "1/4 model: yolox_nano into var/models (copied from $SHARED/models, else downloaded and checked)"
export EDGE_AGENT_MODELS_DIR="$PWD/var/models"
$BIN/edge-agent models fetch --manifest models/yolox_nano.json --dest var/models --search "$SHARED/models" >/dev/null
export EDGE_AGENT_MEDIA_DIR="${EDGE_AGENT_MEDIA_DIR:-$SHARED/media}"

# this run's broker, state, log and received messages, kept for reading afterwards (the next run starts afresh)
work="$PWD/var/demo"
rm -rf "$work" && mkdir -p "$work"
port=$($BIN/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "2/4 broker: a local Mosquitto on 127.0.0.1:$port"
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker=$!
sub="" agent=""
trap 'kill $agent $sub $broker 2>/dev/null || true' EXIT
for _ in $(seq 50); do mosquitto_sub -h 127.0.0.1 -p "$port" -t '$SYS/#' -C 1 -W 1 >/dev/null 2>&1 && break; sleep 0.1; done

mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv5 -q 1 -t 'edge/v1/#' -F '%t %p' >"$work/received.txt" &
sub=$!
sleep 0.5

step "3/4 agent: edge-agent run --config examples/vtest.yaml on $EDGE_AGENT_MEDIA_DIR/vtest.avi (about a minute; its log: var/demo/agent.log)"
EDGE_AGENT_BROKER__PORT="$port" EDGE_AGENT_STATE_DIR="$work/state" EDGE_AGENT_HEALTH__LOG_INTERVAL_S=10 \
  $BIN/edge-agent run --config examples/vtest.yaml 2>"$work/agent.log" &
agent=$!
while kill -0 "$agent" 2>/dev/null; do
  sleep 5
  kill -0 "$agent" 2>/dev/null || break
  step "    running: $(grep -c '/events/' "$work/received.txt" || true) events received so far"
done
wait "$agent" || { tail -20 "$work/agent.log"; exit 1; }
agent=""
sleep 1

step "4/4 done in $((SECONDS - start)) s; the agent's last words: $(tail -n 1 "$work/agent.log")"
echo
bash deploy/demo-report.sh "$work/received.txt"
echo "kept in var/demo: agent.log (the agent's log), received.txt (every message the subscriber got), state/"
