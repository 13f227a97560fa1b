#!/usr/bin/env bash
# Build the Ballast images (targets api, ui, jobs, backup of the root Dockerfile).
#   scripts/images.sh [TARGET ...]                  (default: api ui jobs backup)
# Environment:
#   ENGINE       podman (default when installed) or docker
#   TAG          image tag (default: the VERSION file)
#   REGISTRY     image name prefix (default: localhost/ballast)
#   BASE_IMAGE   Python base image (default python:3.11-slim, the Dockerfile's default)
#   UV_IMAGE     image carrying /uv (default ghcr.io/astral-sh/uv:<pinned>, the Dockerfile's default)
#   PG_MAJOR     PostgreSQL major of the servers the backup image backs up (default: the base's
#                Debian client; the backup commands refuse a client older than the server)
#   LOCAL_BASE=1 build both from local parts instead of pulling them (no registry reachable):
#                a debootstrapped Debian bookworm with python3 (localhost/ballast-base:bookworm)
#                and a scratch image holding this machine's uv binary (localhost/uv:<version>).
# Prints one line per built image: "<target> <image>".
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf 'images: %s\n' "$*" >&2; }

ENGINE=${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
TAG=${TAG:-$(cat VERSION)}
REGISTRY=${REGISTRY:-localhost/ballast}
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(api ui jobs backup)

if [ "$ENGINE" = podman ]; then
    # The default OCI runtime (crun) fails on these machines; runc works. Ref: ENVIRONMENT notes.
    conf="$root/var/tools/containers.conf"
    if [ ! -f "$conf" ]; then
        mkdir -p "$(dirname "$conf")"
        printf '[containers]\ndefault_ulimits = ["nofile=1024:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' >"$conf"
    fi
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$conf}
fi

build_args=()
if [ "${LOCAL_BASE:-0}" = 1 ]; then
    BASE_IMAGE=${BASE_IMAGE:-localhost/ballast-base:bookworm}
    if ! "$ENGINE" image exists "$BASE_IMAGE" 2>/dev/null; then
        command -v debootstrap >/dev/null || { log "debootstrap missing: make install (Debian package debootstrap)"; exit 1; }
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        mirror=${mirror:-http://deb.debian.org/debian}
        rootfs=$(mktemp -d)
        trap 'rm -rf "$rootfs"' EXIT
        log "debootstrap bookworm from $mirror (about a minute)"
        debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -c . | "$ENGINE" import --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    fi
    uv_version=$(uv --version | awk '{print $2}')
    UV_IMAGE=${UV_IMAGE:-localhost/uv:$uv_version}
    if ! "$ENGINE" image exists "$UV_IMAGE" 2>/dev/null; then
        ctx=$(mktemp -d)
        # pyenv and similar put a shell shim on PATH; the image needs the real binary.
        uv_bin=$(python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null) || uv_bin=$(command -v uv)
        cp "$uv_bin" "$ctx/uv"
        printf 'FROM scratch\nCOPY uv /uv\n' >"$ctx/Containerfile"
        "$ENGINE" build -q -t "$UV_IMAGE" -f "$ctx/Containerfile" "$ctx" >/dev/null
        rm -rf "$ctx"
    fi
fi
# A host that reaches PyPI through a TLS-intercepting proxy trusts an extra CA; lend it to uv.
if [ -n "${SSL_CERT_FILE:-}" ] && [ -f "$SSL_CERT_FILE" ] && [ "$ENGINE" = podman ]; then
    build_args+=(-v "$SSL_CERT_FILE:/run/host-ca.crt:ro" --build-arg SSL_CERT_FILE=/run/host-ca.crt --build-arg UV_NATIVE_TLS=1)
fi
[ -z "${BASE_IMAGE:-}" ] || build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -z "${UV_IMAGE:-}" ] || build_args+=(--build-arg "UV_IMAGE=$UV_IMAGE")
[ -z "${PG_MAJOR:-}" ] || build_args+=(--build-arg "PG_MAJOR=$PG_MAJOR")

for target in "${targets[@]}"; do
    image="$REGISTRY-$target:$TAG"
    log "building $image (target $target)"
    "$ENGINE" build "${build_args[@]}" --target "$target" -t "$image" -f Dockerfile . >&2
    echo "$target $image"
done
