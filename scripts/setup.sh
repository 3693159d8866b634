#!/usr/bin/env bash
# Sets up a drover checkout on Debian: the system packages it uses (installed only when missing, as
# root), the npm dependencies (npm ci) and the build. With --test, also what the test suite uses.
#
#   ./scripts/setup.sh          # to run drover (then: ./bin/drover up)
#   ./scripts/setup.sh --test   # to run the tests (then: npm test)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for a in "$@"; do
  case "$a" in
    --test) want_test=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

# What drover runs: ip/iptables and strongSwan's charon (VICI, kernel-libipsec) for the managed network,
# HAProxy for balancers, curl for health checks.
pkgs=(iproute2 iptables curl ca-certificates python3 make g++
  strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins haproxy)
# What the tests drive as real clients and peers (chromium: the web UI tests, headless).
test_pkgs=(bind9-dnsutils dnsmasq dnsperf wrk procps util-linux docker.io busybox-static tcpdump iperf3 chromium)
[ "$want_test" = 1 ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: missing Debian packages: ${missing[*]} — run as root (sudo) or install them first" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
node_minor=$(node -p 'process.versions.node.split(".")[1]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || { [ "$node_major" = 20 ] && [ "$node_minor" -lt 6 ]; }; then
  echo "setup.sh: drover needs Node.js ≥ 20.6 (found $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# npm ci only when the lock file changed since the last install (it rebuilds better-sqlite3 from source).
stamp=node_modules/.drover-lock-sha
sha=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sha" ]; then
  echo "setup.sh: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$sha" > "$stamp"
fi
echo "setup.sh: building"
npm run --silent build
# The batched UDP transport of the DNS server (C, N-API; needs python3, make and g++ from above).
if ! out=$(npm run --silent build:native 2>&1); then
  echo "$out" >&2
  echo "setup.sh: building native/udp-batch failed (see above)" >&2
  exit 1
fi
echo "setup.sh: ready"
