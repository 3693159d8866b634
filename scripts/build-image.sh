#!/usr/bin/env bash
# build-image.sh - builds the drover agent image (drover/agent:latest) on a machine without Docker Hub.
#
#   1. the base image local/debian:bookworm, once: debootstrap --variant=minbase bookworm → docker import
#      (skipped when the image exists; --rebuild-base forces it). Needs root and debootstrap.
#   2. stages this machine's node binary as tmp/image/node (the image runs the same node the native
#      modules - better-sqlite3, native/udp-batch - were built for),
#   3. npm run build (dist/) and npm run build:native (udp_batch.node) when their outputs are missing,
#   4. docker build --build-arg BASE=<base> -t <tag> .
# Progress goes to stderr. On a machine with Docker Hub, plain
#   docker build --build-arg BASE=node:20-bookworm-slim -t drover/agent:latest .
# after npm ci, npm run build, npm run build:native works without this script (see the Dockerfile header).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${DROVER_IMAGE_TAG:-drover/agent:latest}
BASE=${DROVER_IMAGE_BASE:-local/debian:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
REBUILD_BASE=0
NO_CACHE=()

usage() {
  cat <<USAGE
usage: scripts/build-image.sh [options]

Builds the drover agent image from a local Debian 12 base (no Docker Hub needed).

options:
  -t, --tag TAG        image tag (default: \$DROVER_IMAGE_TAG or drover/agent:latest)
  --base IMAGE         base image name to use / create (default: \$DROVER_IMAGE_BASE or local/debian:bookworm);
                       an image that is not local/debian:* must already exist (e.g. node:20-bookworm-slim)
  --mirror URL         Debian mirror for debootstrap and apt (default: \$DEBIAN_MIRROR or $MIRROR)
  --rebuild-base       debootstrap and import the base again even if it exists
  --no-cache           docker build --no-cache
  -h, --help           this text

environment: DOCKER_HOST (the dockerd to build in; it needs to reach the Debian mirror).
needs: docker (CLI + a reachable dockerd), node + npm, and for the base: root and debootstrap
(apt-get install -y debootstrap).
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    -t|--tag) TAG=${2:?--tag needs a value}; shift 2 ;;
    --base) BASE=${2:?--base needs a value}; shift 2 ;;
    --mirror) MIRROR=${2:?--mirror needs a value}; shift 2 ;;
    --rebuild-base) REBUILD_BASE=1; shift ;;
    --no-cache) NO_CACHE=(--no-cache); shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-image: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { echo "build-image: $*" >&2; }
die() { echo "build-image: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

command -v docker >/dev/null 2>&1 || die "docker CLI not found (apt-get install -y docker.io)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "no dockerd answers at ${DOCKER_HOST:-unix:///var/run/docker.sock} (start dockerd or set DOCKER_HOST)"
command -v node >/dev/null 2>&1 || die "node not found (Node.js >= 20.6 is needed to build drover)"
command -v npm >/dev/null 2>&1 || die "npm not found"

# 1. base image
if [ "$REBUILD_BASE" = 1 ] || ! docker image inspect "$BASE" >/dev/null 2>&1; then
  case "$BASE" in
    local/debian:*) ;;
    *) die "base image $BASE does not exist; only local/debian:* is created by this script (docker pull it, or use --base local/debian:bookworm)" ;;
  esac
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found: apt-get install -y debootstrap (needed once, for the base image $BASE)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root (run as root, or sudo, once for the base image $BASE)"
  ROOTFS=$(mktemp -d /var/tmp/drover-rootfs.XXXXXX)
  trap 'rm -rf "$ROOTFS"' EXIT
  log "debootstrap --variant=minbase bookworm from $MIRROR into $ROOTFS ..."
  t=$(now)
  debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
    || { tail -20 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; die "debootstrap failed"; }
  rm -f "$ROOTFS.log"
  log "debootstrap done in $(since "$t")"
  # apt inside the image: bookworm, bookworm-updates and bookworm-security (debootstrap only writes bookworm main)
  rm -f "$ROOTFS/etc/apt/sources.list"
  printf '%s\n' 'Types: deb' "URIs: $MIRROR" 'Suites: bookworm bookworm-updates' 'Components: main' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' '' \
    'Types: deb' "URIs: $SECURITY_MIRROR" 'Suites: bookworm-security' 'Components: main' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >"$ROOTFS/etc/apt/sources.list.d/debian.sources"
  rm -f "$ROOTFS"/var/cache/apt/archives/*.deb
  rm -rf "$ROOTFS"/var/lib/apt/lists/*
  : >"$ROOTFS/etc/resolv.conf"
  log "docker import → $BASE ..."
  t=$(now)
  tar -C "$ROOTFS" -c . | docker import -c 'CMD ["bash"]' - "$BASE" >/dev/null
  log "import done in $(since "$t")"
  rm -rf "$ROOTFS"
  trap - EXIT
else
  log "base image $BASE exists (--rebuild-base to recreate it)"
fi

cd "$REPO"

# 2. node: staged only for a base without node (the Dockerfile ignores it when the base has one)
rm -rf tmp/image
if docker run --rm --entrypoint sh "$BASE" -c 'command -v node' >/dev/null 2>&1; then
  log "base $BASE has node: not staging one"
else
  NODE_BIN=$(readlink -f "$(command -v node)")
  mkdir -p tmp/image
  cp "$NODE_BIN" tmp/image/node
  log "staged $NODE_BIN ($(node --version)) as tmp/image/node"
fi

# 3. build outputs
[ -d node_modules ] || die "node_modules/ missing: run npm ci first"
if [ ! -f dist/cli/main.js ] || [ -n "$(find src config tsconfig.json tsconfig.build.json -newer dist/cli/main.js -print -quit)" ]; then
  log "npm run build ..."; t=$(now); npm run build --silent >&2; log "npm run build done in $(since "$t")"
else
  log "dist/ is up to date"
fi
UDP=native/udp-batch/build/Release/udp_batch.node
if [ ! -f "$UDP" ] || [ -n "$(find native/udp-batch/src native/udp-batch/binding.gyp -newer "$UDP" -print -quit)" ]; then
  log "npm run build:native ..."; t=$(now); npm run build:native --silent >&2; log "npm run build:native done in $(since "$t")"
else
  log "$UDP is up to date"
fi

# 4. the image
log "docker build --build-arg BASE=$BASE -t $TAG . ..."
t=$(now)
docker build "${NO_CACHE[@]}" --build-arg "BASE=$BASE" -t "$TAG" . >&2
log "docker build done in $(since "$t")"
rm -rf tmp/image
log "built $TAG ($(docker image inspect --format '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
