#!/usr/bin/env bash
# Install or upgrade ipc-edge-agent as a systemd service (Debian 12 / Ubuntu 22.04+, amd64 or
# arm64). Run it as root from a checkout; running it again upgrades in place:
#   - system user and group ipc-agent (no login shell, home /var/lib/ipc-agent)
#   - a venv in /opt/ipc-agent/venv with the agent from this checkout (or --wheel FILE) and its
#     dependencies from the package index pip is configured for
#   - /etc/ipc-agent/agent.toml from systemd/agent.example.toml, root:ipc-agent 0640, only if
#     there is none yet (an existing one is never touched); the example itself, always fresh,
#     as /etc/ipc-agent/agent.example.toml
#   - /var/lib/ipc-agent (the data_dir), ipc-agent:ipc-agent 0750
#   - /etc/systemd/system/ipc-agent.service, then daemon-reload and enable; the service is
#     restarted if it was running (an upgrade) and started if --start says so
# Undo with scripts/uninstall.sh.
set -euo pipefail
umask 022 # the venv must be readable by ipc-agent whatever root's umask is

usage() {
  cat <<'EOF'
Usage: sudo scripts/install.sh [--start] [--wheel FILE] [--python PY] [--root DIR]

  --start        start the service now (it is restarted anyway if it was running)
  --wheel FILE   install this ipc-edge-agent wheel instead of building one from the checkout
  --python PY    the Python (>= 3.10, with venv) the venv is made from (default: python3)
  --root DIR     install under DIR instead of / (DIR/opt/ipc-agent, DIR/etc/ipc-agent, ...),
                 as any user, for tests and staging: no user is created, nothing is chowned
                 and systemctl is not run (the script says what it skipped)
  -h, --help     this help

pip reads its usual configuration (pip.conf, PIP_INDEX_URL, PIP_FIND_LINKS, ...), e.g. for a
local mirror or an offline wheel directory.
EOF
}

die() {
  echo "install.sh: error: $*" >&2
  exit 1
}
step() { echo "== $*"; }
skip() { echo "-- skipped ($1): $2"; }

NAME=ipc-agent
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=""
ROOT_MODE=0
START=0
WHEEL=""
PYTHON=python3

while (($#)); do
  case $1 in
    --start) START=1 ;;
    --wheel) (($# >= 2)) || die "--wheel needs a file"; WHEEL=$2; shift ;;
    --wheel=*) WHEEL=${1#*=} ;;
    --python) (($# >= 2)) || die "--python needs an interpreter"; PYTHON=$2; shift ;;
    --python=*) PYTHON=${1#*=} ;;
    --root) (($# >= 2)) || die "--root needs a directory"; ROOT=$2; ROOT_MODE=1; shift ;;
    --root=*) ROOT=${1#*=}; ROOT_MODE=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

# --- checks, before anything is changed -------------------------------------------------------
if ((ROOT_MODE)); then
  [[ -n $ROOT ]] || die "--root needs a directory"
elif [[ $(id -u) -ne 0 ]]; then
  die "must run as root (sudo $0 ...); or --root DIR to install under DIR"
fi
[[ -f $SRC/systemd/ipc-agent.service && -f $SRC/systemd/agent.example.toml ]] ||
  die "$SRC/systemd/ipc-agent.service or agent.example.toml is missing: run the script from a checkout"
if [[ -n $WHEEL ]]; then
  [[ -f $WHEEL ]] || die "--wheel $WHEEL: no such file"
  [[ $WHEEL == *.whl ]] || die "--wheel $WHEEL: not a wheel (*.whl)"
  WHEEL=$(cd "$(dirname "$WHEEL")" && pwd -P)/$(basename "$WHEEL")
else
  [[ -f $SRC/pyproject.toml ]] || die "$SRC/pyproject.toml is missing: give --wheel FILE"
fi

command -v "$PYTHON" >/dev/null ||
  die "$PYTHON not found; on Debian/Ubuntu: apt-get install python3 python3-venv"
# One look at the interpreter: "<major>.<minor> <has venv+ensurepip: yes|no>".
PY_INFO=$("$PYTHON" - <<'PY'
import sys
try:
    import ensurepip, venv  # noqa: F401  (Debian/Ubuntu ship ensurepip in python3-venv)
    ok = "yes"
except ImportError:
    ok = "no"
print(f"{sys.version_info[0]}.{sys.version_info[1]} {ok}")
PY
) || die "$PYTHON does not run"
read -r PY_VERSION PY_VENV <<<"$PY_INFO"
IFS=. read -r PY_MAJOR PY_MINOR <<<"$PY_VERSION"
((PY_MAJOR > 3 || (PY_MAJOR == 3 && PY_MINOR >= 10))) ||
  die "$PYTHON is Python $PY_VERSION; the agent needs Python >= 3.10 (--python PY to pick another)"
[[ $PY_VENV == yes ]] ||
  die "$PYTHON (Python $PY_VERSION) has no venv/ensurepip module; on Debian/Ubuntu: apt-get install python3-venv"

if ((ROOT_MODE)); then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd -P)
  if [[ $ROOT == / ]]; then ROOT=""; fi
fi
OPT=$ROOT/opt/ipc-agent
VENV=$OPT/venv
ETC=$ROOT/etc/ipc-agent
CONF=$ETC/agent.toml
STATE=$ROOT/var/lib/ipc-agent
UNIT_DIR=$ROOT/etc/systemd/system
UNIT=$UNIT_DIR/$NAME.service

if ((ROOT_MODE)); then
  SYSTEMD=no
  SYSTEMD_WHY="--root"
elif ! command -v systemctl >/dev/null; then
  SYSTEMD=no
  SYSTEMD_WHY="no systemctl"
elif [[ ! -d /run/systemd/system ]]; then
  SYSTEMD=offline # systemctl works on files (enable), but there is no running systemd
  SYSTEMD_WHY="systemd is not running"
else
  SYSTEMD=yes
fi

echo "ipc-edge-agent install: root ${ROOT:-/}, Python $PY_VERSION ($PYTHON)"

# --- user and group ---------------------------------------------------------------------------
if ((ROOT_MODE)); then
  skip --root "system user and group $NAME"
else
  if ! getent group "$NAME" >/dev/null; then
    step "creating system group $NAME"
    groupadd --system "$NAME"
  fi
  if ! getent passwd "$NAME" >/dev/null; then
    step "creating system user $NAME (no login, home /var/lib/ipc-agent)"
    useradd --system --gid "$NAME" --home-dir /var/lib/ipc-agent --no-create-home \
      --shell /usr/sbin/nologin --comment "IP camera edge agent" "$NAME"
  fi
fi

# own OWNER:GROUP PATH: chown, or say it was skipped.
own() {
  if ((ROOT_MODE)); then
    skip --root "chown $1 $2"
  else
    chown "$1" "$2"
  fi
}

# --- directories ------------------------------------------------------------------------------
install -d -m 0755 "$OPT" "$UNIT_DIR"
install -d -m 0750 "$ETC" "$STATE"
chmod 0750 "$ETC" "$STATE" # install -d leaves the mode of an existing directory alone
own root:"$NAME" "$ETC"
own "$NAME:$NAME" "$STATE"

# --- the venv and the agent -------------------------------------------------------------------
if [[ -x $VENV/bin/python ]] &&
  [[ $("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) == "$PY_VERSION" ]]; then
  step "reusing the venv $VENV (Python $PY_VERSION)"
else
  if [[ -e $VENV ]]; then
    step "replacing the venv $VENV (not a working Python $PY_VERSION venv)"
    rm -rf "$VENV"
  else
    step "creating the venv $VENV"
  fi
  "$PYTHON" -m venv "$VENV" ||
    die "could not create the venv with $PYTHON -m venv; on Debian/Ubuntu: apt-get install python3-venv"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [[ -n $WHEEL ]]; then
  PACKAGE=$WHEEL
else
  # Build from a copy: pip's in-tree build would leave build/ in the checkout, and stale files
  # in build/ can end up in the wheel.
  step "building the agent's wheel from $SRC"
  mkdir "$WORK/src"
  tar -C "$SRC" -cf - --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
    --exclude='./*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude=.ruff_cache --exclude=./demo-out --exclude='./replay-*' . | tar -C "$WORK/src" -xf -
  "${PIP[@]}" wheel --no-deps --wheel-dir "$WORK/dist" "$WORK/src" ||
    die "building the wheel failed (see pip's message above)"
  PACKAGE=$(echo "$WORK"/dist/*.whl)
fi
step "installing $(basename "$PACKAGE") and its dependencies into $VENV"
# First the wheel with whatever dependencies are missing or too old; then the wheel alone again,
# so a rebuilt wheel of an unchanged version still replaces the installed code.
"${PIP[@]}" install "$PACKAGE" || die "pip install failed (see pip's message above)"
"${PIP[@]}" install --no-deps --force-reinstall "$PACKAGE" || die "pip install failed"
VERSION=$("$VENV/bin/ipc-agent" --version) || die "$VENV/bin/ipc-agent does not run"
step "installed: $VERSION"

# --- configuration ----------------------------------------------------------------------------
install -m 0644 "$SRC/systemd/agent.example.toml" "$ETC/agent.example.toml"
if [[ -e $CONF ]]; then
  step "keeping the existing $CONF"
  if [[ $(stat -c %A "$CONF") == *r?? ]]; then
    echo "!! $CONF is readable by every user, and it may hold camera passwords:" \
      "chown root:$NAME $CONF && chmod 0640 $CONF" >&2
  fi
else
  step "installing $CONF (from systemd/agent.example.toml: edit it)"
  install -m 0640 "$SRC/systemd/agent.example.toml" "$CONF.new"
  own root:"$NAME" "$CONF.new"
  mv "$CONF.new" "$CONF"
fi
CONFIG_OK=1
"$VENV/bin/ipc-agent" check-config --config "$CONF" || CONFIG_OK=0

# --- systemd ----------------------------------------------------------------------------------
step "installing $UNIT"
install -m 0644 "$SRC/systemd/ipc-agent.service" "$UNIT.new"
mv "$UNIT.new" "$UNIT"

START_CMD=""
((START)) && START_CMD="; systemctl start $NAME"
case $SYSTEMD in
  no)
    skip "$SYSTEMD_WHY" "systemctl daemon-reload; systemctl enable $NAME$START_CMD"
    ;;
  offline)
    step "enabling $NAME (systemd is not running: it starts at the next boot)"
    systemctl enable "$NAME.service"
    skip "$SYSTEMD_WHY" "systemctl daemon-reload$START_CMD"
    ;;
  yes)
    WAS_ACTIVE=0
    systemctl is-active --quiet "$NAME.service" && WAS_ACTIVE=1
    systemctl daemon-reload
    systemctl enable --quiet "$NAME.service"
    step "enabled $NAME (starts at boot)"
    if ((!CONFIG_OK)); then
      if ((WAS_ACTIVE)); then
        echo "!! $NAME keeps running the old code until the config is fixed" >&2
      fi
    elif ((WAS_ACTIVE)); then
      step "restarting $NAME (it was running)"
      systemctl restart "$NAME.service" || die "$NAME did not restart: journalctl -u $NAME -e"
    elif ((START)); then
      step "starting $NAME"
      systemctl start "$NAME.service" || die "$NAME did not start: journalctl -u $NAME -e"
    else
      echo "   start it with: systemctl start $NAME"
    fi
    ;;
esac

if ((!CONFIG_OK)); then
  die "$CONF is not valid (see above): fix it, then: systemctl restart $NAME"
fi
echo "done: $VERSION in $VENV; config $CONF; data $STATE"
