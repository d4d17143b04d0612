#!/usr/bin/env bash
# Installs what the console's browser tests need: Debian's chromium, CJK fonts (the page is
# Chinese) and the python playwright package, which drives /usr/bin/chromium. Never runs
# `playwright install`: no browser downloads from outside Debian. Idempotent and quick when
# everything is already there.
#   bash scripts/browser-deps.sh
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

log() { printf 'browser-deps: %s\n' "$*" >&2; }

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
if ((${#missing[@]})); then
  log "installing ${missing[*]} (apt-get)"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
if ! .venv/bin/python -c 'import playwright' 2>/dev/null; then
  log "installing playwright (pip) into .venv"
  .venv/bin/python -m pip install -q "playwright>=1.48,<2"
fi
