#!/usr/bin/env bash
# Builds local/strata-base: a Debian bookworm image with Node, for machines that reach the Debian
# mirror but no container registry. Pass it to the project's Dockerfile with
#   docker build --build-arg BASE_IMAGE=local/strata-base -f docker/Dockerfile .
#
# Node and npm are this machine's own (no download). The machine's extra CA certificates
# (/usr/local/share/ca-certificates/*.crt) are trusted inside the image too, with
# NODE_EXTRA_CA_CERTS set, so npm works where HTTPS goes through an intercepting proxy; that
# belongs to this machine's network, which is why it lives here and not in docker/Dockerfile.
#
# Usage: docker/build-local-base.sh [--force]    (image name: $STRATA_BASE_IMAGE, default local/strata-base)
# Re-running is quick: the image is rebuilt only when it is missing, --force is given, or the
# host's Node or CA certificates have changed since it was built.
set -euo pipefail

IMAGE=${STRATA_BASE_IMAGE:-local/strata-base}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_DIR=/usr/local/share/ca-certificates

force=0
case "${1:-}" in
  --force) force=1 ;;
  '') ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(readlink -f "$(dirname "$(readlink -f "$(command -v npm)")")/..")
if [ ! -f "$npm_dir/package.json" ] || [ "$(cd "$npm_dir" && node -p 'require("./package.json").name')" != npm ]; then
  echo "build-local-base: cannot find npm's package folder (looked at $npm_dir)" >&2
  exit 1
fi
node_version=$("$node_bin" --version)
shopt -s nullglob
certs=("$CA_DIR"/*.crt)
shopt -u nullglob
# The label records what went in, so a changed Node or CA bundle on the host triggers a rebuild.
stamp="$SUITE node-$node_version certs-$(cat /dev/null "${certs[@]}" | sha256sum | cut -c1-16)"

if [ "$force" = 0 ] && [ "$(docker image inspect -f '{{index .Config.Labels "strata.base"}}' "$IMAGE" 2>/dev/null || true)" = "$stamp" ]; then
  echo "build-local-base: $IMAGE is up to date ($stamp)"
  exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

staging=$(mktemp -d)
# A broken pipeline can still leave an image behind: it is imported under a scratch name and
# only named $IMAGE once Node runs in it.
scratch="strata-base-building:$$"
trap 'rm -rf "$staging"; docker rmi "$scratch" >/dev/null 2>&1 || true' EXIT
mkdir -p "$staging/certs"
for c in "${certs[@]}"; do cp "$c" "$staging/certs/"; done

started=$(date +%s)
# uid/gid 1000 "node", as in the official Node images, so files on bind mounts line up either way.
mmdebstrap --quiet --variant=minbase --include=ca-certificates \
  --customize-hook="copy-in $node_bin /usr/local/bin" \
  --customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules\"" \
  --customize-hook="copy-in $npm_dir /usr/local/lib/node_modules" \
  --customize-hook="ln -s ../lib/node_modules/npm/bin/npm-cli.js \"\$1/usr/local/bin/npm\"" \
  --customize-hook="ln -s ../lib/node_modules/npm/bin/npx-cli.js \"\$1/usr/local/bin/npx\"" \
  --customize-hook="sync-in $staging/certs $CA_DIR" \
  --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1' \
  --customize-hook='chroot "$1" groupadd --gid 1000 node' \
  --customize-hook='chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  "$SUITE" - "deb $MIRROR $SUITE main" |
  docker import \
    -c "LABEL strata.base=\"$stamp\"" \
    -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["node"]' \
    - "$scratch" >/dev/null

docker run --rm "$scratch" node -e '
  const { existsSync } = require("node:fs");
  if (!existsSync(process.env.NODE_EXTRA_CA_CERTS)) throw new Error(`no CA bundle at ${process.env.NODE_EXTRA_CA_CERTS}`);
  process.stdout.write(`node ${process.version}, npm ${require("/usr/local/lib/node_modules/npm/package.json").version}\n`);' >&2
docker tag "$scratch" "$IMAGE"
echo "build-local-base: built $IMAGE ($stamp) in $(( $(date +%s) - started )) s"
