// DesiredContainer → the Docker Engine create request (pure).
import type { ContainerCreateOptions, HostConfig } from 'dockerode';
import { LABEL_CONFIG_HASH, type DesiredContainer } from './desired.js';

/** The name of the user-defined bridge network managed containers join (report §3.3, option C). */
export const MANAGED_NETWORK = 'drover';

export interface PortBinding {
  /** `80/tcp` */
  containerPort: string;
  hostPort?: string;
  hostIp?: string;
}

/** Parses `[hostIp:][publicPort:]privatePort/proto` (the renderer's port syntax). */
export function parsePort(spec: string): PortBinding {
  const parts = spec.split(':');
  const containerPort = parts.pop() ?? '';
  if (!/^\d+\/(tcp|udp)$/.test(containerPort)) throw new Error(`bad port spec "${spec}"`);
  if (parts.length === 0) return { containerPort };
  if (parts.length === 1) {
    const only = parts[0] as string;
    return /^\d+$/.test(only) ? { containerPort, hostPort: only } : { containerPort, hostIp: only };
  }
  const hostPort = parts.pop() as string;
  const hostIp = parts.join(':');
  if (hostPort !== '' && !/^\d+$/.test(hostPort)) throw new Error(`bad port spec "${spec}"`);
  return { containerPort, ...(hostPort ? { hostPort } : {}), ...(hostIp ? { hostIp } : {}) };
}

/** `host:container[:perms]` → Docker's device mapping. */
function device(spec: string): { PathOnHost: string; PathInContainer: string; CgroupPermissions: string } {
  const [host = spec, inContainer, perms] = spec.split(':');
  return { PathOnHost: host, PathInContainer: inContainer ?? host, CgroupPermissions: perms ?? 'rwm' };
}

function dockerNetworkMode(d: DesiredContainer): string {
  return d.networkMode === 'managed' ? MANAGED_NETWORK : d.networkMode;
}

export interface CreateSpecOptions {
  /**
   * Publish `ports` through Docker (its DNAT rules); false when the agent's network controller
   * publishes them itself (CATTLE_PREROUTING, client address preserved). Managed containers only:
   * host- and bridge-mode containers keep Docker's publishing.
   */
  publishPorts?: boolean;
}

export function createOptions(d: DesiredContainer, o: CreateSpecOptions = {}): ContainerCreateOptions {
  const dockerPublishes = o.publishPorts !== false || d.networkMode !== 'managed';
  const exposed: Record<string, Record<string, never>> = {};
  const bindings: Record<string, { HostIp?: string; HostPort?: string }[]> = {};
  for (const p of d.ports.map(parsePort)) {
    exposed[p.containerPort] = {};
    if (!dockerPublishes || (p.hostPort === undefined && p.hostIp === undefined)) continue;
    (bindings[p.containerPort] ??= []).push({ ...(p.hostIp ? { HostIp: p.hostIp } : {}), HostPort: p.hostPort ?? '' });
  }
  const restart = d.startOnce ? { Name: 'no' } : d.restartPolicy ? restartPolicy(d.restartPolicy) : undefined;
  const host: HostConfig = {
    NetworkMode: dockerNetworkMode(d),
    ...(d.binds.length ? { Binds: d.binds } : {}),
    ...(Object.keys(bindings).length ? { PortBindings: bindings } : {}),
    ...(d.volumesFrom.length ? { VolumesFrom: d.volumesFrom } : {}),
    ...(restart ? { RestartPolicy: restart } : {}),
    ...(d.dns.length ? { Dns: d.dns } : {}),
    ...(d.dnsSearch.length ? { DnsSearch: d.dnsSearch } : {}),
    ...(d.privileged !== undefined ? { Privileged: d.privileged } : {}),
    ...(d.readOnly !== undefined ? { ReadonlyRootfs: d.readOnly } : {}),
    ...(d.capAdd ? { CapAdd: d.capAdd } : {}),
    ...(d.capDrop ? { CapDrop: d.capDrop } : {}),
    ...(d.devices ? { Devices: d.devices.map(device) } : {}),
    ...(d.securityOpt ? { SecurityOpt: d.securityOpt } : {}),
    ...(d.extraHosts ? { ExtraHosts: d.extraHosts } : {}),
    ...(d.memory !== undefined ? { Memory: d.memory } : {}),
    ...(d.memoryReservation !== undefined ? { MemoryReservation: d.memoryReservation } : {}),
    ...(d.cpuShares !== undefined ? { CpuShares: d.cpuShares } : {}),
    ...(d.logConfig ? { LogConfig: { Type: d.logConfig.driver, Config: d.logConfig.config } } : {}),
  };
  return {
    name: d.name,
    Image: d.image,
    ...(d.command ? { Cmd: d.command } : {}),
    ...(d.entrypoint ? { Entrypoint: d.entrypoint } : {}),
    Env: d.env,
    Labels: { ...d.labels, [LABEL_CONFIG_HASH]: d.configHash },
    ...(d.hostname ? { Hostname: d.hostname } : {}),
    ...(d.domainName ? { Domainname: d.domainName } : {}),
    ...(d.tty !== undefined ? { Tty: d.tty } : {}),
    ...(d.stdinOpen !== undefined ? { OpenStdin: d.stdinOpen } : {}),
    ...(d.user !== undefined ? { User: d.user } : {}),
    ...(d.workingDir !== undefined ? { WorkingDir: d.workingDir } : {}),
    ...(d.stopSignal !== undefined ? { StopSignal: d.stopSignal } : {}),
    ...(Object.keys(exposed).length ? { ExposedPorts: exposed } : {}),
    ...(d.volumes.length ? { Volumes: Object.fromEntries(d.volumes.map((v) => [v, {}])) } : {}),
    HostConfig: host,
    ...(d.networkMode === 'managed' && d.ipAddress
      ? { NetworkingConfig: { EndpointsConfig: { [MANAGED_NETWORK]: { IPAMConfig: { IPv4Address: d.ipAddress } } } } }
      : {}),
  };
}

function restartPolicy(p: NonNullable<DesiredContainer['restartPolicy']>): { Name: string; MaximumRetryCount?: number } {
  return { Name: p.name, ...(p.name === 'on-failure' && p.maximumRetryCount !== undefined ? { MaximumRetryCount: p.maximumRetryCount } : {}) };
}
