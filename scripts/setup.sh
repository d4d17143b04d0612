#!/usr/bin/env bash
# Creates .venv and installs Shouwang into it. Idempotent: does nothing when
# pyproject.toml has not changed since the last successful install.
#   bash scripts/setup.sh [--dev]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PY=${PYTHON:-python3}
EXTRAS=""
[[ ${1:-} == --dev ]] && EXTRAS="[dev]"

log() { printf 'setup: %s\n' "$*" >&2; }

if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null; then
  log "ERROR: Python 3.11 or newer is needed ($PY is $("$PY" --version 2>&1))"; exit 1
fi
# Debian splits venv/ensurepip into python3-venv.
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  log "installing python3-venv (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.installed$EXTRAS"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
  exit 0
fi
log "installing shouwang$EXTRAS into .venv (first run takes a minute)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".$EXTRAS"
echo "$want" >"$stamp"
