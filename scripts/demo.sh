#!/usr/bin/env bash
# The agent's main job on an embedded default: no camera, no cloud account.
# Creates/refreshes ./.venv, installs the agent, makes a short recording with people walking
# through a noisy scene, runs the agent on it as a camera, and shows what it cut.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${DEMO_OUT:-$ROOT/demo-out}

# What this needs from the system: Python >= 3.10 with its venv module (Debian and Ubuntu ship
# that apart, in python3-venv). As root it is installed; otherwise the command is named.
PYTHON=${PYTHON:-python3}
need_packages() {
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "!! $PYTHON cannot make a venv: install $* (sudo apt-get install $*), then run $0 again" >&2
    exit 1
  fi
}
command -v "$PYTHON" >/dev/null || need_packages python3 python3-venv
PY_OK=$("$PYTHON" -c 'import sys; print(int(sys.version_info >= (3, 10)))') || {
  echo "!! $PYTHON does not run (see above); set PYTHON=/path/to/python3" >&2
  exit 1
}
[[ $PY_OK == 1 ]] || {
  echo "!! $PYTHON is older than Python 3.10; set PYTHON=/path/to/python3.10-or-newer" >&2
  exit 1
}
# A usable .venv runs and has pip. A half-made one (python3 -m venv failed at ensurepip,
# leaving a .venv without pip) is made again.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || need_packages python3-venv
  if [[ -e .venv ]]; then
    echo "== .venv is incomplete (no pip: an earlier python3 -m venv failed); making it again"
    rm -rf .venv
  else
    echo "== creating .venv"
  fi
  "$PYTHON" -m venv .venv
fi
echo "== installing the agent into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e .

rm -rf "$OUT/data"
mkdir -p "$OUT"
echo "== making a 40 s demo recording (640x360, H.264, people walk through)"
.venv/bin/python -m tests.support.synth walk "$OUT" --duration 40 > "$OUT/scene.json"
VIDEO=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["path"])' "$OUT/scene.json")
.venv/bin/python - "$OUT/scene.json" <<'PY'
import json, sys
scene = json.load(open(sys.argv[1]))
spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in scene["motion"])
print(f"   {scene['path']}\n   someone moves at: {spans}")
PY

cat > "$OUT/agent.toml" <<TOML
# Demo configuration: one "camera" reading the demo recording.
[agent]
device_id = "demo-gateway"
data_dir = "$OUT/data"

[[cameras]]
name = "demo"
url = "$VIDEO"
realtime = false   # as fast as possible; a real camera streams in real time
TOML
chmod 0640 "$OUT/agent.toml" # configs hold camera passwords: not readable by every user

echo "== running the agent on it (ipc-agent run --once): motion -> clips -> keyframes -> spool"
.venv/bin/ipc-agent run --config "$OUT/agent.toml" --once 2>&1 | sed 's/^/   /'

echo "== what it catalogued (ipc-agent queue)"
.venv/bin/ipc-agent queue --config "$OUT/agent.toml" | sed 's/^/   /'
echo "   clips and keyframes (JPEG) are under $OUT/data/clips/demo/"
ls -1 "$OUT"/data/clips/demo/*/ | sed 's/^/     /'

cat <<NEXT

Next:
  - Point it at a real camera: copy systemd/agent.example.toml, set [[cameras]] url to
    rtsp://user:password@CAMERA-IP:554/stream, then: .venv/bin/ipc-agent run --config FILE
  - Tune motion settings on your own recording:
      .venv/bin/ipc-agent replay your-recording.mp4 --config FILE --out /tmp/tuning
  - Run the tests: scripts/test.sh
NEXT
