#!/usr/bin/env bash
# Sets up a Debian/Ubuntu machine to run the demo and the tests: system packages
# (broker, FFmpeg, GStreamer's RTSP server for a test camera) and the project in
# a virtual environment at .venv. Idempotent. Run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3-venv python3-pip
  mosquitto mosquitto-clients
  ffmpeg
  python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav
  chromium  # the zone editor's browser test (Playwright drives /usr/bin/chromium; it never downloads one)
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[setup] installing system packages (a few minutes the first time): ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv and installing the project (a few minutes the first time)"
  "$PYTHON" -m venv .venv
else
  echo "[setup] updating the project in .venv (seconds when nothing changed)"
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'
echo "setup done: $(.venv/bin/edge-agent --version)"
