#!/usr/bin/env bash
# Remove what scripts/install.sh installed: stop and disable the service, remove its unit and
# /opt/ipc-agent. The configuration (/etc/ipc-agent) and the data (/var/lib/ipc-agent: spool,
# clips, keyframes) stay, so a later install carries on where this one stopped, unless --purge
# is given: then they go too, with the unit's drop-ins and the ipc-agent user and group.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo scripts/uninstall.sh [--purge] [--root DIR]

  --purge      also delete /etc/ipc-agent, /var/lib/ipc-agent (every clip not yet uploaded!),
               /etc/systemd/system/ipc-agent.service.d and the ipc-agent user and group
  --root DIR   uninstall from under DIR (as install.sh --root DIR), as any user: no user is
               deleted and systemctl is not run (the script says what it skipped)
  -h, --help   this help
EOF
}

die() {
  echo "uninstall.sh: error: $*" >&2
  exit 1
}
step() { echo "== $*"; }
skip() { echo "-- skipped ($1): $2"; }

NAME=ipc-agent
ROOT=""
ROOT_MODE=0
PURGE=0

while (($#)); do
  case $1 in
    --purge) PURGE=1 ;;
    --root) (($# >= 2)) || die "--root needs a directory"; ROOT=$2; ROOT_MODE=1; shift ;;
    --root=*) ROOT=${1#*=}; ROOT_MODE=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

if ((ROOT_MODE)); then
  [[ -n $ROOT ]] || die "--root needs a directory"
  [[ -d $ROOT ]] || die "--root $ROOT: no such directory"
  ROOT=$(cd "$ROOT" && pwd -P)
  if [[ $ROOT == / ]]; then ROOT=""; fi
elif [[ $(id -u) -ne 0 ]]; then
  die "must run as root (sudo $0 ...); or --root DIR to uninstall from under DIR"
fi

OPT=$ROOT/opt/ipc-agent
ETC=$ROOT/etc/ipc-agent
STATE=$ROOT/var/lib/ipc-agent
UNIT=$ROOT/etc/systemd/system/$NAME.service
DROPINS=$ROOT/etc/systemd/system/$NAME.service.d

if ((ROOT_MODE)); then
  SYSTEMD=no
  SYSTEMD_WHY="--root"
elif ! command -v systemctl >/dev/null; then
  SYSTEMD=no
  SYSTEMD_WHY="no systemctl"
elif [[ ! -d /run/systemd/system ]]; then
  SYSTEMD=offline
  SYSTEMD_WHY="systemd is not running"
else
  SYSTEMD=yes
fi

echo "ipc-edge-agent uninstall: root ${ROOT:-/}$( ((PURGE)) && echo ", purging config and data")"

# --- the service ------------------------------------------------------------------------------
case $SYSTEMD in
  no)
    skip "$SYSTEMD_WHY" "systemctl disable --now $NAME; systemctl daemon-reload"
    ;;
  offline)
    if [[ -e $UNIT ]]; then
      step "disabling $NAME"
      systemctl disable "$NAME.service" || true
    fi
    skip "$SYSTEMD_WHY" "systemctl stop $NAME; systemctl daemon-reload"
    ;;
  yes)
    if [[ -e $UNIT ]] || systemctl is-active --quiet "$NAME.service"; then
      step "stopping and disabling $NAME (open clips are finished first)"
      systemctl disable --now "$NAME.service" || true
    fi
    ;;
esac

if [[ -e $UNIT ]]; then
  step "removing $UNIT"
  rm -f "$UNIT"
fi
if [[ -e $OPT ]]; then
  step "removing $OPT (the agent and its venv)"
  rm -rf "$OPT"
fi

# --- configuration, data, user ----------------------------------------------------------------
if ((PURGE)); then
  for dir in "$DROPINS" "$ETC" "$STATE"; do
    if [[ -e $dir ]]; then
      step "purging $dir"
      rm -rf "$dir"
    fi
  done
  if ((ROOT_MODE)); then
    skip --root "userdel $NAME; groupdel $NAME"
  else
    if getent passwd "$NAME" >/dev/null; then
      step "deleting system user $NAME"
      userdel "$NAME" || echo "!! could not delete user $NAME (still running processes?)" >&2
    fi
    if getent group "$NAME" >/dev/null; then
      step "deleting system group $NAME"
      groupdel "$NAME" || echo "!! could not delete group $NAME" >&2
    fi
  fi
else
  for dir in "$ETC" "$STATE" "$DROPINS"; do
    if [[ -e $dir ]]; then
      echo "   kept $dir (--purge deletes it)"
    fi
  done
  if ((!ROOT_MODE)) && getent passwd "$NAME" >/dev/null; then
    echo "   kept system user $NAME (--purge deletes it)"
  fi
fi

if [[ $SYSTEMD == yes ]]; then
  systemctl daemon-reload
  systemctl reset-failed "$NAME.service" 2>/dev/null || true
fi
echo "done"
