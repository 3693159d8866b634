// Assembles a production agent from configuration and flags: metrics endpoint, capabilities (metadata,
// DNS, the Docker runtime) and the Agent itself. Shared by `drover agent` and `drover up`.
import type { Command } from 'commander';
import type { Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { Agent } from '../agent/agent.js';
import { agentCapabilities } from '../agent/capabilities/index.js';
import { HealthMonitor } from '../agent/capabilities/health/monitor.js';
import { startMetricsServer } from '../agent/metrics-server.js';
import { startAccessServer } from '../agent/access/server.js';
import Dockerode from 'dockerode';
import { createDockerRuntime } from '../agent/runtime/docker-runtime.js';
import { resolveDockerSocket } from '../agent/runtime/socket.js';
import type { Logger } from '../common/log.js';
import { countUnexpectedErrorsIn } from '../common/last-resort.js';
import { rethrowListenError, type BindTest } from '../common/listen.js';
import { parseHostPort, parseLabels, type Config } from '../config/config.js';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { NetworkController } from '../agent/capabilities/network/controller.js';
import { identityProvider } from '../agent/capabilities/network/identity.js';
import { containerMtu, networkEnabled, realNetworkParts, type NetworkSetting } from '../agent/capabilities/network/parts.js';
import type { NetworkStatus } from '../model/reports.js';
import { BalancerController } from '../agent/capabilities/balancer/controller.js';
import { balancerAddresses } from '../agent/capabilities/balancer/addresses.js';
import { haproxyUnavailable } from '../agent/capabilities/balancer/available.js';
import { mergeStateSources } from '../agent/state-sources.js';

/** The first non-loopback IPv4 address of this machine (what other hosts most likely reach). */
export function defaultAgentIp(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

export interface HostAgentFlags {
  agentIp?: string;
  hostname?: string;
  labels?: string;
  dockerSocket?: string;
  metadataListen?: string;
  dnsListen?: string;
  metricsListen?: string;
  network?: string;
}

/** The agent flags `drover agent` and `drover up` share (with --config and --log-level), worded once. */
export function withHostAgentOptions(cmd: Command): Command {
  return cmd
    .option('--agent-ip <ip>', "this host's address as other hosts reach it (default: first non-loopback IPv4)")
    .option('--labels <k=v,...>', 'host labels for scheduling, e.g. hostname=cassandra1,zone=a')
    .option('--docker-socket <path>', 'Docker socket the agent runs containers through (default: DOCKER_HOST=unix://…, else /var/run/docker.sock if it exists, else no container runtime)')
    .option('--metadata-listen <host:port>', "rancher-metadata address, '' for none (default: config agent.metadataListen, 169.254.169.250:80)")
    .option('--dns-listen <host:port>', "DNS address (UDP and TCP), '' for none (default: config agent.dnsListen, 169.254.169.250:53)")
    .option('--metrics-listen <host:port>', "the agent's Prometheus /metrics address, '' for none (default: 127.0.0.1:9109)")
    .option('--network <auto|on|off>', 'run the managed network (IPsec/VXLAN overlay, CATTLE_* iptables chains); auto: when running containers as root (default: config agent.network)')
    .option('--config <file>', 'JSON config file merged over config/default.json')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent');
}

/** The addresses the agent will listen on, as bind tests to fail fast on before it starts. */
export function agentBindTests(cfg: Config, flags: HostAgentFlags): BindTest[] {
  const tests: BindTest[] = [];
  const metrics = flags.metricsListen ?? cfg.agent.metricsListen;
  if (metrics) tests.push({ at: parseHostPort(metrics, '--metrics-listen'), flag: '--metrics-listen' });
  // DNS and metadata may listen on 169.254.169.250 before it is on the host (the agent adds it).
  const dns = flags.dnsListen ?? cfg.agent.dnsListen;
  if (dns) tests.push({ at: parseHostPort(dns, '--dns-listen'), flag: '--dns-listen', udp: true, mayNotExistYet: true });
  const metadata = flags.metadataListen ?? cfg.agent.metadataListen;
  if (metadata) tests.push({ at: parseHostPort(metadata, '--metadata-listen'), flag: '--metadata-listen', mayNotExistYet: true });
  return tests;
}

/** The agent flags as command-line arguments again (for the agent child of `drover up`). */
export function hostAgentArgs(flags: HostAgentFlags): string[] {
  const out: string[] = [];
  const add = (flag: string, v: string | undefined) => {
    if (v !== undefined) out.push(flag, v);
  };
  add('--agent-ip', flags.agentIp);
  add('--hostname', flags.hostname);
  add('--labels', flags.labels);
  add('--docker-socket', flags.dockerSocket);
  add('--metadata-listen', flags.metadataListen);
  add('--dns-listen', flags.dnsListen);
  add('--metrics-listen', flags.metricsListen);
  add('--network', flags.network);
  return out;
}

export interface HostAgent {
  agent: Agent;
  /** Stops the agent (and its capabilities) and the metrics endpoint. */
  stop(): Promise<void>;
}

export async function startHostAgent(
  cfg: Config,
  flags: HostAgentFlags,
  log: Logger,
  where: { dataDir: string; serverUrl: string; registrationToken?: string | undefined },
): Promise<HostAgent> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'drover_agent_' });
  countUnexpectedErrorsIn(registry);
  const metricsAt = flags.metricsListen ?? cfg.agent.metricsListen;
  let metrics: Server | undefined;
  if (metricsAt) {
    const at = parseHostPort(metricsAt, '--metrics-listen');
    metrics = await startMetricsServer(registry, at.host, at.port).catch((err: unknown) => rethrowListenError(err, at, '--metrics-listen'));
  }
  const dockerSocket = resolveDockerSocket(flags.dockerSocket, log);
  const agentIp = flags.agentIp ?? (cfg.agent.agentIp || defaultAgentIp());
  const setting = parseNetworkSetting(flags.network ?? cfg.agent.network);
  const net = networkEnabled(setting, { dockerSocket, uid: process.getuid?.(), platform: process.platform });
  log.info({ network: net.enabled, reason: net.reason }, net.enabled ? 'managed network on' : 'managed network off');
  let networkStatus: NetworkStatus | undefined;
  const ref: { agent?: Agent } = {};
  const accessPortRef: { port?: number | undefined } = {};
  const parts = net.enabled && dockerSocket ? realNetworkParts({
        log,
        dockerSocket,
        ipsecDir: join(where.dataDir, 'ipsec'),
        identity: identityProvider({
          path: join(where.dataDir, 'ipsec-identity.json'),
          sign: (csr) => (ref.agent ? ref.agent.signCertificate(csr) : Promise.reject(new Error('the agent has not started yet'))),
        }),
      }) : undefined;
  const network = parts
    ? new NetworkController({
        log,
        parts,
        // Containers leaving stay routed while their hosts' runtimes drain them (the same period).
        lingerMs: cfg.agent.drainMs,
        onReport: (r) => {
          networkStatus = { mode: r.mode, backend: r.backend, ...(r.mtu !== undefined ? { mtu: r.mtu } : {}), peers: r.peers };
          ref.agent?.statusChanged();
        },
      })
    : undefined;
  const dockerRuntime = dockerSocket
    ? createDockerRuntime({
        socketPath: dockerSocket,
        log,
        drainMs: cfg.agent.drainMs,
        // A new container starts once the firewall lets its address through (else its first packets are lost).
        ...(network
          ? {
              beforeStart: async ({ name, ip }: { name: string; ip: string }) => {
                if (!(await network.whenAllowed(ip))) log.warn({ container: name, ip }, 'starting a container the firewall does not let through yet (still applying after 10 s)');
              },
            }
          : {}),
        // With the managed network the agent publishes ports (CATTLE_PREROUTING DNAT, client address
        // kept) and sizes the containers' MTU for the tunnels; Docker does neither.
        ...(parts
          ? {
              publishPorts: false,
              networkMtu: (overlay: 'ipsec' | 'vxlan', override: number | undefined) => containerMtu(agentIp, overlay, override, overlay === 'ipsec' ? parts.ipsecOverhead() : 0),
            }
          : {}),
      })
    : undefined;
  if (network && dockerRuntime) dockerRuntime.runtime.reports.onReports(() => network.containersChanged());
  // Balancers run as HAProxy in the agent's namespace: on their managed addresses when the managed
  // network runs (routed and DNATed by it), on `*` otherwise. Without a runnable HAProxy every balancer
  // container scheduled here is reported in error with the reason.
  const haproxyBin = cfg.agent.haproxy;
  const unavailable = dockerSocket ? await haproxyUnavailable(haproxyBin) : 'this agent runs no containers (no Docker socket)';
  if (unavailable) log.warn({ reason: unavailable }, 'balancers cannot run on this host');
  const balancer = new BalancerController({
    log,
    dataDir: where.dataDir,
    haproxyBin,
    ...(unavailable ? { unavailable } : {}),
    ...(parts && !unavailable ? { addresses: balancerAddresses() } : {}),
  });
  const hostname = flags.hostname ?? (cfg.agent.hostname || undefined);
  const health = new HealthMonitor({ log, registry });
  const agent = new Agent({
    dataDir: where.dataDir,
    serverUrl: where.serverUrl,
    ...(where.registrationToken ? { registrationToken: where.registrationToken } : {}),
    ...(hostname ? { hostname } : {}),
    agentIp,
    labels: { ...cfg.agent.labels, ...(flags.labels ? parseLabels(flags.labels) : {}) },
    log,
    registry,
    capabilities: agentCapabilities({
      log,
      registry,
      metadataListen: flags.metadataListen ?? cfg.agent.metadataListen,
      dnsListen: flags.dnsListen ?? cfg.agent.dnsListen,
      dockerRuntime,
      health,
      ...(network ? { network } : {}),
      balancer,
    }),
    ...(network ? { networkStatus: () => networkStatus } : {}),
    accessPort: () => accessPortRef.port,
    // The runtime's reports with the health states merged in (health/monitor.ts).
    containerStates: health.wrap(mergeStateSources(dockerRuntime?.states, balancer.states)),
    watchTimeoutSec: cfg.agent.watchTimeoutSeconds,
  });
  ref.agent = agent;
  // Container logs, shells and stats for the control plane (signed requests only).
  const access =
    dockerSocket && cfg.agent.accessPort > 0
      ? await startAccessServer({ log, docker: new Dockerode({ socketPath: dockerSocket }), key: () => agent.accessKey(), host: agentIp, port: cfg.agent.accessPort }).catch((err: unknown) =>
          rethrowListenError(err, { host: agentIp, port: cfg.agent.accessPort }, 'agent.accessPort (DROVER_AGENT_ACCESS_PORT)'),
        )
      : undefined;
  accessPortRef.port = access?.port;
  await agent.start();
  return {
    agent,
    async stop() {
      await agent.stop();
      await access?.close();
      await new Promise<void>((resolve) => (metrics ? metrics.close(() => resolve()) : resolve()));
    },
  };
}

function parseNetworkSetting(v: string): NetworkSetting {
  if (v === 'auto' || v === 'on' || v === 'off') return v;
  throw new Error(`--network must be auto, on or off (got "${v}")`);
}
