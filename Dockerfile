# The drover agent image: drover (dist/, node_modules/, native/udp-batch, config/) plus the programs its
# capabilities drive: charon (/usr/lib/ipsec/charon, with the kernel-libipsec plugin) and swanctl for the
# IPsec mesh, HAProxy for balancers, iptables, iproute2, procps (sysctl), util-linux (nsenter).
# It runs with the host's network and PID namespace (--net=host --pid=host: the agent finds containers'
# veths by their PID) and --privileged, or where --privileged is refused, --cap-add ALL --cap-drop
# SYS_RESOURCE --device /dev/net/tun --security-opt seccomp=unconfined --security-opt
# systempaths=unconfined (/proc/sys writable; see README, "The agent image").
#
# PID 1 is tini (-s: also a subreaper when it is not PID 1): drover itself starts, supervises and restarts
# charon and HAProxy (with backoff); tini forwards signals to drover and reaps whatever their children
# leave behind.
#
# Two ways to build, both after `npm ci`, `npm run build` and `npm run build:native` on a Debian 12
# (glibc 2.36) machine:
#   * With Docker Hub: node comes from the base image (same major as the build machine's node, so the
#     native modules' ABI matches):
#       docker build --build-arg BASE=node:20-bookworm-slim -t drover/agent:latest .
#   * Without Docker Hub (the default BASE): scripts/build-image.sh (npm run build:image) creates
#     local/debian:bookworm once (debootstrap --variant=minbase bookworm, docker import) and stages the
#     build machine's node binary as tmp/image/node, which is installed only when the base has no node:
#       npm run build:image        # = docker build --build-arg BASE=local/debian:bookworm -t drover/agent:latest .
#
# Run: docker run -d --net=host --pid=host --privileged -v /var/run/docker.sock:/var/run/docker.sock \
#        -v /var/lib/drover:/var/lib/drover drover/agent:latest http://SERVER/v1/scripts/<token>
# Environment: CATTLE_AGENT_IP (this host's address), CATTLE_HOST_LABELS (k=v&k2=v2), and every DROVER_*
# variable of `drover agent --help`.
ARG BASE=local/debian:bookworm
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates tini iproute2 iptables procps util-linux haproxy \
      strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && test -x /usr/lib/ipsec/charon && test -f /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so
# A staged node (tmp/image/node) is copied straight to its place: no second copy in a later layer.
# package.json always matches and the patterns allow no match (tm[p]: also when tmp/ is absent), so this
# COPY works whether a node was staged or not, with the legacy builder and with BuildKit.
COPY package.json tm[p]/image/nod[e] /usr/local/lib/drover-node/
RUN rm /usr/local/lib/drover-node/package.json \
 && if command -v node >/dev/null; then echo "node $(node --version) from the base image"; rm -rf /usr/local/lib/drover-node; \
    elif [ -x /usr/local/lib/drover-node/node ]; then ln -s /usr/local/lib/drover-node/node /usr/local/bin/node; \
    else echo "no node in the base image and none staged as tmp/image/node (see the header)" >&2; exit 1; fi \
 && node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<6)) { console.error("node >= 20.6 needed, have "+process.version); process.exit(1) }'
WORKDIR /opt/drover
COPY package.json package-lock.json ./
COPY node_modules ./node_modules
COPY dist ./dist
COPY native/udp-batch/build/Release/udp_batch.node ./native/udp-batch/build/Release/udp_batch.node
COPY config ./config
COPY rootfs/ /
ENV DROVER_DATA_DIR=/var/lib/drover
VOLUME /var/lib/drover
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/local/bin/drover-entrypoint"]
