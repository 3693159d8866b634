// Builds the metadata answers of one host's agent from the environment state. Pure: same state and options,
// same answers. Every shared object (containers, services, stacks, hosts, the lists) is built once per
// version family and referenced from every client tree; a client tree adds only its own `self`.
//
// Decisions the spec leaves open, made here:
// - Clients: one entry per listed container on the managed network with a primary IP (every host's, not only
//   this one's — the agent may serve any of them); when two share an IP, a running one wins, then the newest.
// - Sidekicks appear as services of their own (name = launch config name, same uuid, `primary_service_name`
//   = the primary), as in Rancher; their containers' `service_name` is the sidekick name. They carry the
//   service's links.
// - `links` of a service: `{"<stack>/<service>": "<alias>"}`, the alias being the consumed service's name when
//   the link has none (that is the name the link resolves under in DNS).
// - `token` (only under `self/service`): hex HMAC-SHA256 keyed by `tokenKey` of
//   `drover-metadata-service-token:<service uuid>`; stable across rebuilds and hosts. The key is a secret of
//   the control plane, handed to its agents only (src/server/auth/metadata-key.ts); nothing in the tree can
//   compute it. Without a key the token is null (never keyed by anything a container can read).
// - `version`: `<state revision>-<16 hex of sha256(tree format, environment uuid, host id)>`: it changes with
//   every state revision and whenever the environment is re-created (new uuid) or the agent serves another host.
// - `hostname` of a container: its configured hostname, else its name. `primary_mac_address`: null (not
//   tracked). `network_uuid`: a uuid derived from the environment uuid for managed containers, else null.
import { createHash, createHmac } from 'node:crypto';
import type { Container, Host, LaunchConfig, PortSpec, Service, Stack } from '../model/resources.js';
import type { EnvState } from '../model/state.js';
import { DEFAULT_CLIENT, LATEST_VERSION, markNormalized, type Answers, type JsonMap, type JsonValue, type VersionAnswers } from './answers.js';

export const METADATA_VERSIONS = ['2015-07-25', '2015-12-19', '2016-07-29'] as const;
export type MetadataVersion = (typeof METADATA_VERSIONS)[number];

/** Bump when the layout of the trees changes, so `version` changes too and templates re-render. */
const TREE_FORMAT = 'drover-metadata-1';

export interface MetadataTreeOptions {
  /** The host this agent runs on (`self/host` of `default`). */
  hostId: string;
  /** Key of the service tokens (see the header); without one, tokens are null. */
  tokenKey?: string | undefined;
}

// Shared, frozen empty values: most containers have no links, dns or ports; one object serves them all
// (the answers are immutable once built).
const EMPTY_LIST: JsonValue[] = Object.freeze([]) as unknown as JsonValue[];
const EMPTY_MAP: JsonMap = Object.freeze({}) as JsonMap;

/** A copy of a list of strings (the shared empty list when empty). */
function listOf(xs: readonly string[]): JsonValue[] {
  return xs.length > 0 ? [...xs] : EMPTY_LIST;
}

/** A copy of a string map (the shared empty map when empty). */
function mapOf(m: Readonly<Record<string, string>>): JsonMap {
  for (const _k in m) return { ...m };
  return EMPTY_MAP;
}

const GONE_STATES = new Set(['removed', 'removing', 'purged', 'purging']);

/** Whether a container appears in metadata: not being removed and not kept back for a rollback. */
export function isListedContainer(c: Container): boolean {
  return c.desiredState !== 'removed' && c.generation !== 'previous' && !GONE_STATES.has(c.state);
}

function byNameThenUuid<T extends { name: string; uuid: string }>(a: T, b: T): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0;
}

function deriveUuid(seed: string): string {
  const h = createHash('sha1').update(seed).digest('hex');
  // Shaped like a version-5 UUID.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}

export function serviceToken(key: string, serviceUuid: string): string {
  return createHmac('sha256', key).update(`drover-metadata-service-token:${serviceUuid}`).digest('hex');
}

export function metadataVersionString(state: EnvState, hostId: string): string {
  const h = createHash('sha256').update(`${TREE_FORMAT}\u0000${state.environment.uuid}\u0000${hostId}`).digest('hex');
  return `${state.revision}-${h.slice(0, 16)}`;
}

function portString(p: PortSpec, hostIp: string): string {
  return `${hostIp}:${p.publicPort}:${p.privatePort}/${p.protocol}`;
}

/** Published ports of a service's launch config, as written in compose (`[ip:]public:private/proto`). */
function servicePorts(lc: LaunchConfig | undefined): string[] {
  if (!lc) return [];
  return lc.ports.map((p) =>
    p.publicPort === undefined
      ? `${p.privatePort}/${p.protocol}`
      : `${p.hostIp ? `${p.hostIp}:` : ''}${p.publicPort}:${p.privatePort}/${p.protocol}`,
  );
}

function exposeStrings(lc: LaunchConfig | undefined): string[] {
  return lc ? lc.expose.map((p) => `${p.privatePort}/${p.protocol}`) : [];
}

/** One metadata "service": a service's primary launch config, or one of its sidekicks. */
interface ServiceEntry {
  service: Service;
  stack: Stack;
  /** '' for the primary. */
  lcName: string;
  lc: LaunchConfig | undefined;
  containers: Container[];
}

type Family = 'old' | 'new';
const familyOf = (v: MetadataVersion): Family => (v === '2016-07-29' ? 'new' : 'old');

/** Builds the answers (every version, `latest`, a `default` and one entry per managed container IP). */
export function buildMetadataAnswers(state: EnvState, opts: MetadataTreeOptions): Answers {
  const env = state.environment;
  const tokenKey = opts.tokenKey;
  const version = metadataVersionString(state, opts.hostId);
  const managedNetworkUuid = deriveUuid(`${env.uuid}:managed-network`);

  // ---- What is listed, indexed once.
  const hosts = [...state.hosts.values()].filter((h) => !GONE_STATES.has(h.state)).sort(byNameThenUuid);
  const hostById = new Map(hosts.map((h) => [h.id, h]));
  const stacks = [...state.stacks.values()].filter((s) => !GONE_STATES.has(s.state)).sort(byNameThenUuid);
  const stackById = new Map(stacks.map((s) => [s.id, s]));
  const services = [...state.services.values()]
    .filter((s) => !GONE_STATES.has(s.state) && stackById.has(s.stackId))
    .sort(byNameThenUuid);
  const serviceById = new Map(services.map((s) => [s.id, s]));
  const containers = [...state.containers.values()].filter(isListedContainer).sort(byNameThenUuid);
  const containerUuidById = new Map<string, string>();
  for (const c of state.containers.values()) containerUuidById.set(c.id, c.uuid);

  const byUnit = new Map<string, Container[]>();
  for (const c of containers) {
    if (c.serviceId === null || !serviceById.has(c.serviceId)) continue;
    const k = `${c.serviceId}\u0000${c.launchConfigName}`;
    let list = byUnit.get(k);
    if (!list) byUnit.set(k, (list = []));
    list.push(c);
  }
  for (const list of byUnit.values()) {
    list.sort((a, b) => (a.serviceIndex ?? 0) - (b.serviceIndex ?? 0) || byNameThenUuid(a, b));
  }

  const containerLinks = new Map<string, [string, string][]>();
  for (const l of state.containerLinks.values()) {
    const target = containerUuidById.get(l.targetContainerId);
    if (target === undefined) continue;
    let list = containerLinks.get(l.containerId);
    if (!list) containerLinks.set(l.containerId, (list = []));
    list.push([l.name, target]);
  }
  const serviceLinks = new Map<string, [string, string][]>();
  for (const l of state.serviceLinks.values()) {
    const target = serviceById.get(l.consumedServiceId);
    const targetStack = target ? stackById.get(target.stackId) : undefined;
    if (!target || !targetStack) continue;
    let list = serviceLinks.get(l.serviceId);
    if (!list) serviceLinks.set(l.serviceId, (list = []));
    list.push([`${targetStack.name}/${target.name}`, l.name || target.name]);
  }

  // Service entries: primary, then sidekicks in launch-config order; services sorted by stack, then name.
  const entries: ServiceEntry[] = [];
  const entryByUnit = new Map<string, ServiceEntry>();
  const entriesByStack = new Map<string, ServiceEntry[]>();
  const sortedServices = [...services].sort((a, b) => {
    const sa = stackById.get(a.stackId) as Stack;
    const sb = stackById.get(b.stackId) as Stack;
    return byNameThenUuid(sa, sb) || byNameThenUuid(a, b);
  });
  for (const service of sortedServices) {
    const stack = stackById.get(service.stackId) as Stack;
    const units: [string, LaunchConfig | undefined][] = [['', service.launchConfig]];
    for (const lc of service.secondaryLaunchConfigs) if (lc.name) units.push([lc.name, lc]);
    for (const [lcName, lc] of units) {
      const e: ServiceEntry = { service, stack, lcName, lc, containers: byUnit.get(`${service.id}\u0000${lcName}`) ?? [] };
      entries.push(e);
      entryByUnit.set(`${service.id}\u0000${lcName}`, e);
      let list = entriesByStack.get(stack.id);
      if (!list) entriesByStack.set(stack.id, (list = []));
      list.push(e);
    }
  }

  // ---- Objects per version family (old = 2015-*, new = 2016-07-29/latest).
  const lower = (f: Family) => (f === 'new' ? (s: string) => s.toLowerCase() : (s: string) => s);

  const hostObj = (h: Host, f: Family): JsonMap => {
    const o: JsonMap = {
      agent_ip: h.agentIpAddress,
      agent_state: h.agentState,
      environment_uuid: env.uuid,
    };
    if (f === 'old') o.hostId = h.id;
    o.hostname = h.hostname;
    o.labels = mapOf(h.labels);
    o.local_storage_mb = h.localStorageMb ?? null;
    o.memory = h.memory ?? null;
    o.milli_cpu = h.milliCpu ?? null;
    o.name = h.name;
    o.state = h.state;
    o.uuid = h.uuid;
    return o;
  };

  const containerObj = (c: Container, f: Family): JsonMap => {
    const nm = lower(f);
    const host = c.hostId !== null ? hostById.get(c.hostId) : undefined;
    const service = c.serviceId !== null ? serviceById.get(c.serviceId) : undefined;
    const stack = service ? stackById.get(service.stackId) : c.stackId !== null ? stackById.get(c.stackId) : undefined;
    const defaultIp = f === 'old' ? (host?.agentIpAddress ?? '0.0.0.0') : '0.0.0.0';
    const ports: JsonValue[] = [];
    for (const p of c.config.ports) {
      if (p.publicPort === undefined) continue;
      const ip = p.hostIp && !(f === 'old' && p.hostIp === '0.0.0.0') ? p.hostIp : defaultIp;
      ports.push(portString(p, ip));
    }
    const links: JsonMap = {};
    for (const [name, uuid] of containerLinks.get(c.id) ?? []) links[nm(name)] = uuid;
    const managed = c.config.networkMode === 'managed';
    return {
      create_index: service ? c.createIndex : null,
      dns: listOf(c.config.dns),
      dns_search: listOf(c.config.dnsSearch),
      environment_uuid: env.uuid,
      external_id: c.externalId,
      health_state: c.healthState,
      host_uuid: host?.uuid ?? null,
      hostname: c.config.hostname ?? c.name,
      ips: c.primaryIpAddress ? [c.primaryIpAddress] : [],
      labels: mapOf(c.config.labels),
      links: Object.keys(links).length > 0 ? links : EMPTY_MAP,
      memory_reservation: c.config.memoryReservation ?? null,
      milli_cpu_reservation: c.config.milliCpuReservation ?? null,
      name: nm(c.name),
      network_uuid: managed ? managedNetworkUuid : null,
      ports: ports.length > 0 ? ports : EMPTY_LIST,
      primary_ip: c.primaryIpAddress,
      primary_mac_address: null,
      service_index: c.serviceIndex !== null ? String(c.serviceIndex) : null,
      service_name: service ? nm(c.launchConfigName || service.name) : null,
      service_uuid: service ? service.uuid : null,
      stack_name: stack ? nm(stack.name) : null,
      stack_uuid: stack ? stack.uuid : null,
      start_count: c.startCount,
      state: c.state,
      system: stack?.system ?? false,
      uuid: c.uuid,
    };
  };

  const hostObjs: Record<Family, Map<string, JsonMap>> = { old: new Map(), new: new Map() };
  const containerObjs: Record<Family, Map<string, JsonMap>> = { old: new Map(), new: new Map() };
  for (const f of ['old', 'new'] as const) {
    for (const h of hosts) hostObjs[f].set(h.id, hostObj(h, f));
    for (const c of containers) containerObjs[f].set(c.id, containerObj(c, f));
  }

  const portRuleObj = (e: ServiceEntry, nm: (s: string) => string, r: NonNullable<Service['lbConfig']>['portRules'][number]): JsonMap => {
    let target: string | null = null;
    const ts = r.serviceId !== undefined ? serviceById.get(r.serviceId) : undefined;
    const tst = ts ? stackById.get(ts.stackId) : undefined;
    if (ts && tst) target = `${nm(tst.name)}/${nm(ts.name)}`;
    else if (r.service) target = r.service.includes('/') ? nm(r.service) : `${nm(e.stack.name)}/${nm(r.service)}`;
    return {
      backend_name: r.backendName ?? null,
      container: null,
      container_uuid: null,
      hostname: r.hostname ?? null,
      path: r.path ?? null,
      priority: r.priority ?? null,
      protocol: r.protocol,
      selector: r.selector ?? null,
      service: target,
      source_port: r.sourcePort,
      target_port: r.targetPort ?? null,
    };
  };

  const serviceObj = (e: ServiceEntry, v: MetadataVersion): JsonMap => {
    const f = familyOf(v);
    const nm = lower(f);
    const { service: s, stack, lc } = e;
    const objs = containerObjs[f];
    const hc = s.healthCheck;
    const lb = s.lbConfig;
    const links: JsonMap = {};
    for (const [k, alias] of serviceLinks.get(s.id) ?? []) links[nm(k)] = alias;
    return {
      containers:
        v === '2015-07-25'
          ? e.containers.map((c) => c.name)
          : e.containers.map((c) => objs.get(c.id) as JsonMap),
      create_index: s.createIndex,
      environment_uuid: env.uuid,
      expose: listOf(exposeStrings(lc)),
      external_ips: listOf(s.externalIpAddresses),
      fqdn: s.fqdn ?? null,
      health_check: hc
        ? {
            healthy_threshold: hc.healthyThreshold,
            interval: hc.interval,
            port: hc.port,
            request_line: hc.requestLine ?? null,
            response_timeout: hc.responseTimeout,
            unhealthy_threshold: hc.unhealthyThreshold,
          }
        : null,
      hostname: s.hostname ?? null,
      kind: s.kind,
      labels: mapOf(lc?.labels ?? {}),
      lb_config:
        s.kind === 'loadBalancerService' && lb
          ? {
              certificate_ids: [...lb.certificateIds],
              config: lb.config ?? null,
              default_certificate_id: lb.defaultCertificateId ?? null,
              port_rules: lb.portRules.map((r) => portRuleObj(e, nm, r)),
              stickiness_policy: { ...(lb.stickinessPolicy ?? {}) },
            }
          : null,
      links: Object.keys(links).length > 0 ? links : EMPTY_MAP,
      metadata: userMetadata(s),
      name: nm(e.lcName || s.name),
      ports: listOf(servicePorts(lc)),
      primary_service_name: nm(s.name),
      scale: s.scale,
      sidekicks: e.lcName === '' ? listOf(s.secondaryLaunchConfigs.flatMap((x) => (x.name ? [nm(x.name)] : []))) : EMPTY_LIST,
      stack_name: nm(stack.name),
      stack_uuid: stack.uuid,
      state: s.state,
      system: stack.system || s.system,
      token: null,
      uuid: s.uuid,
      vip: s.vip ?? null,
    };
  };

  const metadataCache = new Map<string, JsonMap>();
  const userMetadata = (s: Service): JsonMap => {
    let m = metadataCache.get(s.id);
    if (m === undefined) metadataCache.set(s.id, (m = jsonSafeMap(s.metadata)));
    return m;
  };

  // ---- Trees per version.
  const tokens = new Map<string, string>();
  const tokenOf = (uuid: string): string | null => {
    if (tokenKey === undefined || tokenKey === '') return null;
    let t = tokens.get(uuid);
    if (t === undefined) tokens.set(uuid, (t = serviceToken(tokenKey, uuid)));
    return t;
  };
  const clients = clientContainers(containers);
  const out: Answers = {};
  for (const v of METADATA_VERSIONS) {
    const f = familyOf(v);
    const nm = lower(f);
    const svcObjs = new Map<ServiceEntry, JsonMap>(entries.map((e) => [e, serviceObj(e, v)]));
    const stackObjs = new Map<string, JsonMap>();
    for (const st of stacks) {
      const list = entriesByStack.get(st.id) ?? [];
      stackObjs.set(st.id, {
        environment_name: env.name,
        environment_uuid: env.uuid,
        name: nm(st.name),
        services: v === '2015-07-25' ? list.map((e) => nm(e.lcName || e.service.name)) : list.map((e) => svcObjs.get(e) as JsonMap),
        system: st.system,
        uuid: st.uuid,
      });
    }
    const lists: TreeLists = {
      containers: containers.map((c) => containerObjs[f].get(c.id) as JsonMap),
      environments:
        v === '2016-07-29'
          ? [{ description: env.description, name: env.name, state: env.state, uuid: env.uuid }]
          : undefined,
      hosts: hosts.map((h) => hostObjs[f].get(h.id) as JsonMap),
      name: env.name,
      services: entries.map((e) => svcObjs.get(e) as JsonMap),
      stacks: stacks.map((s) => stackObjs.get(s.id) as JsonMap),
      uuid: env.uuid,
      version,
    };
    const answers: VersionAnswers = {};
    answers[DEFAULT_CLIENT] = clientTree(lists, { host: hostObjs[f].get(opts.hostId) ?? null });

    const selfServices = new Map<ServiceEntry, JsonMap>();
    for (const c of clients) {
      const e = c.serviceId !== null ? entryByUnit.get(`${c.serviceId}\u0000${c.launchConfigName}`) : undefined;
      let selfService: JsonMap | null = null;
      if (e) {
        selfService = selfServices.get(e) ?? null;
        if (selfService === null) {
          selfService = { ...(svcObjs.get(e) as JsonMap), token: tokenOf(e.service.uuid) };
          selfServices.set(e, selfService);
        }
      }
      const stackId = e ? e.stack.id : c.stackId;
      answers[c.primaryIpAddress as string] = clientTree(lists, {
        container: containerObjs[f].get(c.id) as JsonMap,
        host: (c.hostId !== null ? hostObjs[f].get(c.hostId) : undefined) ?? null,
        service: selfService,
        stack: (stackId !== null ? stackObjs.get(stackId) : undefined) ?? null,
      });
    }
    out[v] = answers;
  }
  out[LATEST_VERSION] = out['2016-07-29'] as VersionAnswers;
  // Every client tree already carries all of default's top-level keys.
  return markNormalized(out);
}

/** The top-level values every tree of one version shares. */
interface TreeLists {
  containers: JsonMap[];
  environments: JsonMap[] | undefined;
  hosts: JsonMap[];
  name: string;
  services: JsonMap[];
  stacks: JsonMap[];
  uuid: string;
  version: string;
}

/** One client's tree (keys in sorted order; fixed-shape literals keep 10k of them cheap). */
function clientTree(l: TreeLists, self: JsonMap): JsonMap {
  if (l.environments === undefined) {
    return { containers: l.containers, hosts: l.hosts, name: l.name, self, services: l.services, stacks: l.stacks, uuid: l.uuid, version: l.version };
  }
  return {
    containers: l.containers,
    environments: l.environments,
    hosts: l.hosts,
    name: l.name,
    self,
    services: l.services,
    stacks: l.stacks,
    uuid: l.uuid,
    version: l.version,
  };
}

/** User metadata (from rancher-compose) as plain JSON: a deep copy, non-JSON values dropped or converted. */
function jsonSafeMap(m: Record<string, unknown>): JsonMap {
  const copy: unknown = JSON.parse(JSON.stringify(m, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)) ?? '{}');
  return typeof copy === 'object' && copy !== null && !Array.isArray(copy) ? (copy as JsonMap) : {};
}

/** The containers that get a client entry: managed, with a primary IP; one per IP (running, then newest). */
function clientContainers(listed: readonly Container[]): Container[] {
  const byIp = new Map<string, Container>();
  for (const c of listed) {
    if (c.primaryIpAddress === null || c.config.networkMode !== 'managed') continue;
    const cur = byIp.get(c.primaryIpAddress);
    if (cur === undefined || preferred(c, cur)) byIp.set(c.primaryIpAddress, c);
  }
  return [...byIp.values()];
}

function preferred(a: Container, b: Container): boolean {
  const ra = a.state === 'running' ? 1 : 0;
  const rb = b.state === 'running' ? 1 : 0;
  if (ra !== rb) return ra > rb;
  if (a.created !== b.created) return a.created > b.created;
  return a.uuid > b.uuid;
}
