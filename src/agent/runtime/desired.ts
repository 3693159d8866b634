// The containers this host should run, rendered from the environment state (pure: no I/O).
//
// One DesiredContainer per container record scheduled on this host (current or previous generation,
// desired running or stopped). It carries everything the Docker runtime needs to create the container
// the way Rancher 1.x's agent did: the `r-<name>-<uuid8>` name, the system labels, the managed IP, the
// rancher DNS (169.254.169.250 with the stack/service search domains), volumes_from resolved to the
// sidekicks' docker names, and a hash of all of it so a changed launch config means a recreate.
// Adopted containers (started by hand) are not rendered: the user runs them, drover only reports them.
// Balancer instances are not rendered either: the balancer controller runs them as HAProxy on the host.
import { createHash } from 'node:crypto';
import type { EnvState } from '../../model/state.js';
import type { Container, LaunchConfig, NetworkMode, PortSpec, RestartPolicy } from '../../model/resources.js';
import { LABELS, RANCHER_SERVICES_IP } from '../../model/labels.js';
import { isBalancerInstance } from '../../model/serving.js';
import { canonicalJson } from '../../common/canonical-json.js';

export const RANCHER_DOMAIN = 'rancher.internal';

/** drover's own labels on the containers it creates. */
export const LABEL_RECORD_ID = 'io.drover.container.id';
export const LABEL_CONFIG_HASH = 'io.drover.config-hash';

export interface DesiredContainer {
  /** The container record's id (what reports are keyed by). */
  recordId: string;
  uuid: string;
  /** The container record's name (`stack-service-1`). */
  recordName: string;
  /** The docker container name: `r-<record name>-<first 8 of the uuid>`. */
  name: string;
  image: string;
  command?: string[];
  entrypoint?: string[];
  /** `KEY=value`, in the launch config's order. */
  env: string[];
  labels: Record<string, string>;
  /** Docker CLI syntax: `[hostIp:][publicPort:]privatePort/proto` (expose-only ports have no public port). */
  ports: string[];
  /** Bind mounts and named volumes: `source:target[:mode]`. */
  binds: string[];
  /** Anonymous volumes (container paths). */
  volumes: string[];
  /** Docker names of the containers whose volumes this one mounts (sidekicks of its deployment unit). */
  volumesFrom: string[];
  restartPolicy?: RestartPolicy;
  /** Run to completion once; never started again once it has run. */
  startOnce: boolean;
  hostname?: string;
  domainName?: string;
  pullPolicy: LaunchConfig['pullPolicy'];
  /** `managed` joins the drover network with `ipAddress`; `container:<x>` is resolved to a docker name. */
  networkMode: NetworkMode;
  /** The managed IP (managed network mode only). */
  ipAddress: string | null;
  dns: string[];
  dnsSearch: string[];
  /** Record ids that must exist before this one is created (volumes_from and container: network sources). */
  after: string[];
  tty?: boolean;
  stdinOpen?: boolean;
  privileged?: boolean;
  readOnly?: boolean;
  user?: string;
  workingDir?: string;
  capAdd?: string[];
  capDrop?: string[];
  devices?: string[];
  securityOpt?: string[];
  extraHosts?: string[];
  memory?: number;
  memoryReservation?: number;
  cpuShares?: number;
  logConfig?: { driver: string; config: Record<string, string> };
  stopSignal?: string;
  desiredState: 'running' | 'stopped';
  /** Its service's drain_timeout_ms (absent: the agent's drainMs). */
  drainMs?: number;
  /** sha256 (first 16 hex digits) of everything above but `desiredState` and `drainMs`: a change means recreate. */
  configHash: string;
}

/** `r-<name>-<first 8 of uuid>`, the original agent's naming. */
export function dockerName(c: Pick<Container, 'name' | 'uuid'>): string {
  return `r-${c.name}-${c.uuid.slice(0, 8)}`;
}

/** The containers of `hostId`, sidekicks (and other dependencies) before the containers that need them. */
export function desiredContainers(state: EnvState, hostId: string): DesiredContainer[] {
  if (!hostId) return [];
  const mine = [...state.containers.values()].filter(
    (c) =>
      c.hostId === hostId &&
      !c.adopted &&
      !isBalancerInstance(c, c.serviceId ? state.services.get(c.serviceId) : undefined) &&
      (c.generation === 'current' || c.generation === 'previous') &&
      (c.desiredState === 'running' || c.desiredState === 'stopped'),
  );
  const rendered = mine.map((c) => render(state, c, mine));
  return orderByDependencies(rendered);
}

function render(state: EnvState, c: Container, mine: Container[]): DesiredContainer {
  const lc = c.config;
  const labels: Record<string, string> = { ...lc.labels, [LABELS.containerUuid]: c.uuid, [LABEL_RECORD_ID]: c.id };
  const managed = lc.networkMode === 'managed';
  if (managed && c.primaryIpAddress && labels[LABELS.containerIp] === undefined) {
    labels[LABELS.containerIp] = `${c.primaryIpAddress}/${prefixOf(state.environment.network.subnet)}`;
  }

  // The other containers of the same deployment unit and generation, by launch config name (the
  // primary under its service's name, as compose's `network_mode: container:<service>` names it).
  const stack = c.stackId ? state.stacks.get(c.stackId) : undefined;
  const service = c.serviceId ? state.services.get(c.serviceId) : undefined;
  const unit = new Map<string, Container>();
  if (c.deploymentUnitUuid) {
    for (const o of mine) {
      if (o.id === c.id || o.deploymentUnitUuid !== c.deploymentUnitUuid || o.generation !== c.generation) continue;
      const key = o.launchConfigName || service?.name;
      if (key) unit.set(key, o);
    }
  }
  const after: string[] = [];
  const volumesFrom: string[] = [];
  for (const name of lc.dataVolumesFromLaunchConfigs) {
    const src = unit.get(name);
    if (!src) continue; // compose validation names only sidekicks of the unit; nothing to mount otherwise
    volumesFrom.push(dockerName(src));
    after.push(src.id);
  }
  let networkMode: NetworkMode = lc.networkMode;
  if (typeof networkMode === 'string' && networkMode.startsWith('container:')) {
    const src = unit.get(networkMode.slice('container:'.length));
    if (src) {
      networkMode = `container:${dockerName(src)}`;
      after.push(src.id);
    }
  }
  const sharesNetwork = networkMode.startsWith('container:');

  const { binds, volumes } = splitVolumes(lc.volumes);
  const { dns, dnsSearch } = dnsOf(lc, labels, networkMode, stack?.name, service?.name);
  const hostname = sharesNetwork
    ? undefined
    : labels[LABELS.containerHostnameOverride] === 'container_name'
      ? c.name
      : lc.hostname;

  const d: Omit<DesiredContainer, 'configHash'> = {
    recordId: c.id,
    uuid: c.uuid,
    recordName: c.name,
    name: dockerName(c),
    image: lc.image,
    ...(lc.command ? { command: lc.command } : {}),
    ...(lc.entrypoint ? { entrypoint: lc.entrypoint } : {}),
    env: Object.entries(lc.environment).map(([k, v]) => `${k}=${v}`),
    labels,
    ports: sharesNetwork ? [] : [...lc.ports.map(portSpec), ...lc.expose.map((p) => portSpec({ ...p, publicPort: undefined, hostIp: undefined }))],
    binds,
    volumes,
    volumesFrom,
    ...(lc.restartPolicy ? { restartPolicy: lc.restartPolicy } : {}),
    startOnce: lc.startOnce || labels[LABELS.containerStartOnce] === 'true',
    ...(hostname ? { hostname } : {}),
    ...(lc.domainName && !sharesNetwork ? { domainName: lc.domainName } : {}),
    pullPolicy: labels[LABELS.containerPullImage] === 'always' ? 'always' : lc.pullPolicy,
    networkMode,
    ipAddress: managed ? c.primaryIpAddress : null,
    dns,
    dnsSearch,
    after: [...new Set(after)],
    ...optional(lc),
    desiredState: c.desiredState === 'running' ? 'running' : 'stopped',
    ...(service?.drainTimeoutMs !== undefined ? { drainMs: service.drainTimeoutMs } : {}),
  };
  return { ...d, configHash: configHash(d) };
}

/** Launch config fields copied as they are when set. */
function optional(lc: LaunchConfig): Partial<DesiredContainer> {
  const out: Partial<DesiredContainer> = {};
  if (lc.tty !== undefined) out.tty = lc.tty;
  if (lc.stdinOpen !== undefined) out.stdinOpen = lc.stdinOpen;
  if (lc.privileged !== undefined) out.privileged = lc.privileged;
  if (lc.readOnly !== undefined) out.readOnly = lc.readOnly;
  if (lc.user !== undefined) out.user = lc.user;
  if (lc.workingDir !== undefined) out.workingDir = lc.workingDir;
  if (lc.capAdd?.length) out.capAdd = lc.capAdd;
  if (lc.capDrop?.length) out.capDrop = lc.capDrop;
  if (lc.devices?.length) out.devices = lc.devices;
  if (lc.securityOpt?.length) out.securityOpt = lc.securityOpt;
  if (lc.extraHosts?.length) out.extraHosts = lc.extraHosts;
  if (lc.memory !== undefined) out.memory = lc.memory;
  if (lc.memoryReservation !== undefined) out.memoryReservation = lc.memoryReservation;
  if (lc.cpuShares !== undefined) out.cpuShares = lc.cpuShares;
  if (lc.logConfig) out.logConfig = lc.logConfig;
  if (lc.stopSignal !== undefined) out.stopSignal = lc.stopSignal;
  return out;
}

export function portSpec(p: PortSpec): string {
  const inner = `${p.privatePort}/${p.protocol}`;
  if (p.hostIp) return `${p.hostIp}:${p.publicPort ?? ''}:${inner}`;
  return p.publicPort !== undefined ? `${p.publicPort}:${inner}` : inner;
}

function prefixOf(subnet: string): string {
  return /\/(\d{1,2})$/.exec(subnet)?.[1] ?? '16';
}

function splitVolumes(specs: string[]): { binds: string[]; volumes: string[] } {
  const binds: string[] = [];
  const volumes: string[] = [];
  for (const v of specs) (v.includes(':') ? binds : volumes).push(v);
  return { binds, volumes };
}

/**
 * The rancher DNS first (managed and bridge containers reach 169.254.169.250 through the host), then the
 * launch config's own servers and search domains. `io.rancher.container.dns=false` opts out of the rancher
 * part; host-network and shared-network containers get only what the launch config asks for (Docker
 * refuses DNS settings for `container:` network modes).
 */
function dnsOf(
  lc: LaunchConfig,
  labels: Record<string, string>,
  networkMode: NetworkMode,
  stack: string | undefined,
  service: string | undefined,
): { dns: string[]; dnsSearch: string[] } {
  if (networkMode.startsWith('container:')) return { dns: [], dnsSearch: [] };
  const rancher = (networkMode === 'managed' || networkMode === 'bridge') && labels[LABELS.containerDns] !== 'false';
  const search: string[] = [];
  if (rancher) {
    if (stack) search.push(`${stack}.${RANCHER_DOMAIN}`);
    if (stack && service) search.push(`${service}.${stack}.${RANCHER_DOMAIN}`);
    search.push(RANCHER_DOMAIN);
  }
  return {
    dns: unique([...(rancher ? [RANCHER_SERVICES_IP] : []), ...lc.dns]),
    dnsSearch: unique([...search, ...lc.dnsSearch]),
  };
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** Dependencies first; otherwise the state's order. Cycles (which compose rejects) keep their order. */
function orderByDependencies(cs: DesiredContainer[]): DesiredContainer[] {
  const byId = new Map(cs.map((c) => [c.recordId, c]));
  const out: DesiredContainer[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (c: DesiredContainer): void => {
    if (done.has(c.recordId) || visiting.has(c.recordId)) return;
    visiting.add(c.recordId);
    for (const dep of c.after) {
      const d = byId.get(dep);
      if (d) visit(d);
    }
    visiting.delete(c.recordId);
    done.add(c.recordId);
    out.push(c);
  };
  for (const c of cs) visit(c);
  return out;
}


function configHash(d: Omit<DesiredContainer, 'configHash'>): string {
  const { desiredState: _ignored, drainMs: _drain, ...rest } = d;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex').slice(0, 16);
}
