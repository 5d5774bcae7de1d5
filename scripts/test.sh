#!/usr/bin/env bash
# Install everything the tests need, then run them.
#   - Debian packages (when root): ffmpeg for ffprobe, GStreamer's RTSP server for live tests.
#     libfaketime (package faketime) jumps the wall clock in the chaos run (tests/test_chaos.py).
#   - Python packages into ./.venv (created if missing), with the agent installed editable.
# Extra arguments go to pytest, e.g. scripts/test.sh -k replay -x
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav systemd procps python3-venv faketime)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "!! missing Debian packages: ${missing[*]}" >&2
    echo "!! run as root (or: sudo apt-get install ${missing[*]}); their tests will be skipped" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
# A usable .venv has pip; one without (python3 -m venv failed at ensurepip) is made again.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  if [[ -e .venv ]]; then
    echo "== .venv is incomplete (no pip: an earlier python3 -m venv failed); making it again"
    rm -rf .venv
  else
    echo "== creating .venv"
  fi
  "$PYTHON" -m venv .venv
fi
echo "== installing the agent and test tools into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
.venv/bin/ruff check agent tests scripts
.venv/bin/ruff format --check agent tests scripts

echo "== pytest"
exec .venv/bin/python -m pytest "$@"
