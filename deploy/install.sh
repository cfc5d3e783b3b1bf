#!/usr/bin/env bash
# Install the edge agent as a systemd service on a Jetson (JetPack 6.1+ or 7) or Debian/Ubuntu x86.
#
#   sudo deploy/install.sh [--dry-run] [--root DIR] [--config-example FILE] SOURCE_DIR
#
# SOURCE_DIR is a checkout of the project (pip-installed into the venv).
# On a Jetson the venv is made from the system Python (3.10 on JetPack 6, 3.12 on JetPack 7)
# with --system-site-packages: JetPack's TensorRT and its GStreamer-enabled OpenCV are built
# for that interpreter. The project's requirements leave OpenCV out and keep numpy < 2 on a
# Tegra kernel (pyproject.toml), so nothing in the venv hides them, and the cuda-python
# matching JetPack's CUDA (/usr/local/cuda/version.json) goes in beside the agent.
# Safe to run again: it converges on the same state and never overwrites
# /etc/edge-agent/config.yaml. It enables the service but does not start it:
# the technician provisions the config first, then `systemctl start edge-agent`.
#
# --root DIR   install the files under DIR (a throwaway root, e.g. an image or a
#              test); host changes (apt, useradd, chown, venv, pip, systemctl)
#              are printed as "plan:" lines, never run.
# --dry-run    print every file it would write and every command it would run
#              ("would ..."); change nothing.
set -euo pipefail

readonly SERVICE_USER=edge-agent
readonly APP_DIR=/opt/edge-agent
readonly VENV_DIR=$APP_DIR/venv
readonly CONFIG_DIR=/etc/edge-agent
readonly STATE_DIR=/var/lib/edge-agent
readonly LOG_DIR=/var/log/edge-agent
readonly UNIT_DIR=/etc/systemd/system
readonly UNIT_NAME=edge-agent.service
readonly APT_PACKAGES=(python3-venv python3-pip ffmpeg mosquitto-clients)
# Jetson: RTSP depayloaders and parsers around JetPack's own NVDEC elements (nvidia-l4t-gstreamer),
# videoconvert and appsink (base), and gst-inspect-1.0 (tools), which selftest asks for the elements;
# CUDA, TensorRT and OpenCV come with JetPack itself (apt install nvidia-jetpack).
readonly JETSON_APT_PACKAGES=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-tools)

ROOT=""
DRY_RUN=0
SOURCE_DIR=""
CONFIG_EXAMPLE=""
PYTHON=${PYTHON:-}
CUDA_PYTHON=""

die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

quoted() { local q; printf -v q '%q ' "$@"; printf '%s' "${q% }"; }

# A change to files under $ROOT: made, unless --dry-run.
fs() {
  if ((DRY_RUN)); then echo "would run: $(quoted "$@")"; return; fi
  echo "+ $(quoted "$@")"
  "$@"
}

# A change to the host itself: made only on a real install (no --root, no --dry-run).
host() {
  if ((DRY_RUN)); then echo "would run: $(quoted "$@")"; return; fi
  if [[ -n $ROOT ]]; then echo "plan: $(quoted "$@")"; return; fi
  echo "+ $(quoted "$@")"
  "$@"
}

# Host state can only be queried on the host itself; under --root assume nothing is there.
on_host() { [[ -z $ROOT ]]; }

parse_args() {
  while (($#)); do
    case $1 in
      --root) [[ $# -ge 2 ]] || die "--root needs a directory"; ROOT=$(realpath -m -- "$2"); shift 2 ;;
      --dry-run) DRY_RUN=1; shift ;;
      --config-example) [[ $# -ge 2 ]] || die "--config-example needs a file"; CONFIG_EXAMPLE=$2; shift 2 ;;
      -h|--help) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0 ;;
      -*) die "unknown option $1 (see --help)" ;;
      *) [[ -z $SOURCE_DIR ]] || die "one SOURCE_DIR only"; SOURCE_DIR=$1; shift ;;
    esac
  done
  [[ -n $SOURCE_DIR ]] || die "missing SOURCE_DIR (the project checkout to install)"
  SOURCE_DIR=$(realpath -- "$SOURCE_DIR")
  CONFIG_EXAMPLE=${CONFIG_EXAMPLE:-$SOURCE_DIR/deploy/config.example.yaml}
  [[ $ROOT != / ]] || ROOT=""
}

# The Jetson's JetPack: 6.1+ (L4T R36.4+: CUDA 12.6, TensorRT 10.3) or 7 (L4T R38+: CUDA 13,
# TensorRT 10.13 / 11.x); sets CUDA_PYTHON to the cuda-python matching its CUDA.
jetpack_preflight() {
  local release major revision cuda
  release=$(head -n 1 "$ROOT/etc/nv_tegra_release" 2>/dev/null || true)
  major=$(sed -n 's/^# R\([0-9]*\) (release).*/\1/p' <<<"$release")
  revision=$(sed -n 's/.*REVISION: \([0-9]*\).*/\1/p' <<<"$release")
  if [[ -z $major ]] || ((major < 36 || (major == 36 && ${revision:-0} < 4))); then
    die "L4T '$release' is not supported: the agent needs JetPack 6.1 or later (TensorRT 10; JetPack 5 and 6.0 ship TensorRT 8)"
  fi
  [[ -f $ROOT/usr/local/cuda/version.json ]] ||
    die "no CUDA in $ROOT/usr/local/cuda: install JetPack (apt install nvidia-jetpack)"
  cuda=$("$PYTHON" -c 'import json, sys; print(".".join(json.load(open(sys.argv[1]))["cuda"]["version"].split(".")[:2]))' \
    "$ROOT/usr/local/cuda/version.json")
  CUDA_PYTHON="cuda-python==$cuda.*"
  echo "JetPack: L4T R$major.${revision:-0}, CUDA $cuda"
}

# Everything checked before the first change, so a failure leaves the box untouched.
preflight() {
  if [[ -z $PYTHON ]]; then
    PYTHON=python3
    is_jetson && PYTHON=/usr/bin/python3  # the interpreter JetPack's bindings are built for
  fi
  [[ -f $SOURCE_DIR/pyproject.toml ]] || die "$SOURCE_DIR is not the project (no pyproject.toml)"
  [[ -f $SOURCE_DIR/deploy/$UNIT_NAME ]] || die "missing $SOURCE_DIR/deploy/$UNIT_NAME"
  [[ -f $CONFIG_EXAMPLE ]] || die "missing example config $CONFIG_EXAMPLE (give one with --config-example)"
  [[ -f $SOURCE_DIR/deploy/zones.example.yaml ]] || die "missing $SOURCE_DIR/deploy/zones.example.yaml"
  if on_host && ((!DRY_RUN)) && ((EUID != 0)); then die "run as root (or use --dry-run / --root DIR)"; fi
  local needed
  needed=$(sed -n 's/^requires-python *= *">= *\([0-9.]*\)".*/\1/p' "$SOURCE_DIR/pyproject.toml")
  if [[ -n $needed ]] && ! "$PYTHON" -c "import sys; sys.exit(sys.version_info[:2] < tuple(map(int, '$needed'.split('.'))))"; then
    die "$PYTHON is $("$PYTHON" -V 2>&1), the agent needs >= $needed (set PYTHON=/path/to/python3.X)"
  fi
  if is_jetson; then jetpack_preflight; fi
}

is_jetson() {
  [[ -e $ROOT/etc/nv_tegra_release ]] ||
    { [[ $(uname -m) == aarch64 ]] && [[ -d $ROOT/usr/lib/aarch64-linux-gnu/tegra ]]; }
}

install_packages() {
  local missing=() pkg wanted=("${APT_PACKAGES[@]}")
  is_jetson && wanted+=("${JETSON_APT_PACKAGES[@]}")
  for pkg in "${wanted[@]}"; do
    if on_host && dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then continue; fi
    missing+=("$pkg")
  done
  # Skipping apt when all is there lets a re-run succeed on a box without internet.
  if ((${#missing[@]} == 0)); then echo "apt packages already installed"; return; fi
  host env DEBIAN_FRONTEND=noninteractive apt-get update
  host env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

create_user() {
  if on_host && id -u "$SERVICE_USER" >/dev/null 2>&1; then
    echo "user $SERVICE_USER exists"
  else
    host useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "edge video agent" "$SERVICE_USER"
  fi
  local group
  for group in video render; do  # GPU, NVDEC and /dev/dri nodes belong to these
    if on_host && ! getent group "$group" >/dev/null; then continue; fi
    host usermod --append --groups "$group" "$SERVICE_USER"
  done
}

# make_dir DIR MODE OWNER:GROUP
make_dir() {
  fs install -d -m "$2" "$ROOT$1"
  host chown "$3" "$1"
}

# write_file SRC DEST MODE: copy when the content differs (a re-run rewrites nothing).
write_file() {
  if [[ -f $ROOT$2 ]] && cmp -s "$1" "$ROOT$2"; then
    echo "up to date: $ROOT$2"
    fs chmod "$3" "$ROOT$2"
    return
  fi
  ((DRY_RUN)) && echo "would write: $ROOT$2 (mode $3, from $1)"
  fs install -m "$3" "$1" "$ROOT$2"
}

install_venv() {
  local venv_args=()
  # JetPack's TensorRT and GStreamer-enabled OpenCV live in the system site-packages only (cuda-python is pip's).
  is_jetson && venv_args+=(--system-site-packages)
  # Re-running venv on an existing one keeps its packages and rewrites pyvenv.cfg,
  # which also repairs a venv made without --system-site-packages on a Jetson.
  host "$PYTHON" -m venv "${venv_args[@]}" "$VENV_DIR"
  host "$VENV_DIR/bin/python" -m pip install --upgrade "$SOURCE_DIR" ${CUDA_PYTHON:+"$CUDA_PYTHON"}
}

# install_once SRC DEST OWNER: a technician's file is never overwritten
install_once() {
  if [[ -e $ROOT$2 ]]; then
    echo "keeping existing $ROOT$2"
  else
    write_file "$1" "$2" 0640
  fi
  host chown "$3" "$2"
}

install_config() {
  local kept=0
  [[ -e $ROOT$CONFIG_DIR/config.yaml ]] && kept=1
  install_once "$CONFIG_EXAMPLE" "$CONFIG_DIR/config.yaml" "root:$SERVICE_USER"
  # The agent rewrites its zones (a zone-editor save, a committed OTA zones update): they live in the
  # state dir, which the service may write (the unit's ReadWritePaths), its config staying read-only.
  ((kept)) || install_once "$SOURCE_DIR/deploy/zones.example.yaml" "$STATE_DIR/zones.yaml" "$SERVICE_USER:$SERVICE_USER"
  zones_note "$ROOT$CONFIG_DIR/config.yaml"
}

# zones_note CONFIG: a config whose zones file lies outside the state dir (as installs made before the zones
# moved there have) keeps zone-editor saves and OTA zones updates from being written: say how to move it.
zones_note() {
  local zones
  [[ -e $1 ]] || return 0  # a dry run writes no config
  zones=$(sed -n 's/^zones_file:[[:space:]]*//p' "$1" | tr -d "\"'")
  [[ -z $zones || $zones == "$STATE_DIR"/* ]] && return 0
  [[ $zones == /* ]] || zones=$CONFIG_DIR/$zones
  echo "note: $1 keeps its zones in $zones, which the service cannot rewrite (zone-editor saves, OTA zones updates):"
  echo "  mv $zones $STATE_DIR/zones.yaml && chown $SERVICE_USER:$SERVICE_USER $STATE_DIR/zones.yaml"
  echo "  then set zones_file: $STATE_DIR/zones.yaml in $CONFIG_DIR/config.yaml (edge-agent doctor checks it)"
}

# Model manifests (metadata and SHA-256); the model files themselves are fetched
# into the state dir with `edge-agent models fetch`, never shipped in the package.
install_manifests() {
  make_dir "$APP_DIR/models" 0755 root:root
  local manifest
  for manifest in "$SOURCE_DIR"/models/*.json; do
    write_file "$manifest" "$APP_DIR/models/$(basename "$manifest")" 0644
  done
}

install_unit() {
  fs install -d -m 0755 "$ROOT$UNIT_DIR"
  write_file "$SOURCE_DIR/deploy/$UNIT_NAME" "$UNIT_DIR/$UNIT_NAME" 0644
  host systemctl daemon-reload
  host systemctl enable "$UNIT_NAME"
}

main() {
  parse_args "$@"
  preflight
  local platform=x86
  is_jetson && platform=jetson
  echo "platform: $platform; root: ${ROOT:-/}; source: $SOURCE_DIR$( ((DRY_RUN)) && echo '; dry run')"
  install_packages
  create_user
  make_dir "$APP_DIR" 0755 root:root
  make_dir "$CONFIG_DIR" 0750 "root:$SERVICE_USER"
  make_dir "$STATE_DIR" 0750 "$SERVICE_USER:$SERVICE_USER"
  make_dir "$LOG_DIR" 0750 "$SERVICE_USER:$SERVICE_USER"
  install_venv
  install_manifests
  install_config
  install_unit
  # as the service's user: what they write (the model, TensorRT's engine cache) the service must rewrite
  echo "done: edit $CONFIG_DIR/config.yaml (or run edge-agent provision), fetch the model with"
  echo "  sudo -u $SERVICE_USER $VENV_DIR/bin/edge-agent models fetch --manifest $APP_DIR/models/yolox_nano.json --dest $STATE_DIR/models"
  echo "then: systemctl start $UNIT_NAME"
  echo "and check the GPU path: sudo -u $SERVICE_USER $VENV_DIR/bin/edge-agent selftest --config $CONFIG_DIR/config.yaml"
}

main "$@"
