# The drover agent image: drover plus the programs its capabilities drive (charon with kernel-libipsec,
# iptables, iproute2, HAProxy). It runs with the host's network (--net=host) and, for the managed
# network, NET_ADMIN/NET_RAW capabilities and /dev/net/tun.
#
# There is no Docker Hub on the machines this is built on: BASE is a Debian 12 image imported locally
# (debootstrap --variant=minbase bookworm DIR && tar -C DIR -c . | docker import - local/debian:bookworm),
# and Node.js ≥ 20.6 (Debian 12 ships 18) is copied from the build machine into the context as
# `node` (cp "$(command -v node)" ./node). Build after `npm run build` and `npm run build:native`:
#   docker build --build-arg BASE=local/debian:bookworm -t drover/agent:latest .
ARG BASE=local/debian:bookworm
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl iproute2 iptables haproxy \
      strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY node /usr/local/bin/node
WORKDIR /opt/drover
COPY package.json package-lock.json ./
COPY node_modules ./node_modules
COPY dist ./dist
COPY native/udp-batch/build/Release/udp_batch.node ./native/udp-batch/build/Release/udp_batch.node
COPY config ./config
COPY rootfs/ /
ENV DROVER_DATA_DIR=/var/lib/drover
VOLUME /var/lib/drover
ENTRYPOINT ["/usr/local/bin/drover-entrypoint"]
