#!/usr/bin/env bash
# The agent's main job on an embedded default: no camera, no cloud account.
# Creates/refreshes ./.venv, installs the agent, makes a short recording with people walking
# through a noisy scene, runs the agent on it as a camera, and shows what it cut.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${DEMO_OUT:-$ROOT/demo-out}

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "== installing the agent into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e .

rm -rf "$OUT/data"
mkdir -p "$OUT"
echo "== making a 40 s demo recording (640x360, H.264, people walk through)"
.venv/bin/python -m agent.synth walk "$OUT" --duration 40 > "$OUT/scene.json"
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
