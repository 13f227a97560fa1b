#!/usr/bin/env bash
# Idempotent developer/CI bootstrap.
#   scripts/bootstrap.sh [DEBIAN_PACKAGE ...]
# - installs `uv` when it is missing (pip --user, then plain pip);
# - as root, installs the given Debian packages that are not installed yet
#   (apt-get update only when something is missing).
# Fast no-op when everything is already present.
set -euo pipefail

log() { printf 'bootstrap: %s\n' "$*"; }

if command -v uv >/dev/null 2>&1; then
    log "uv present ($(uv --version))"
else
    log "installing uv with pip"
    python3 -m pip install --user uv || python3 -m pip install uv || pip install uv
    export PATH="${HOME}/.local/bin:${PATH}"
    command -v uv >/dev/null 2>&1 || { log "uv installed but not on PATH; add ~/.local/bin to PATH"; exit 1; }
fi

if [ "$#" -eq 0 ]; then
    exit 0
fi

missing=()
for pkg in "$@"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        log "$pkg present"
    else
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${missing[*]}"
    log "not root: install them yourself (sudo apt-get install ${missing[*]}) or set BALLAST_TEST_POSTGRES_URL / BALLAST_TEST_REDIS_URL"
    exit 0
fi

log "apt-get update"
apt-get update -qq
log "apt-get install ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
