// Builds the metadata answers of one host's agent from the environment state. Pure: same state and options,
// same answers. Every shared object (containers, services, stacks, hosts, the lists) is built once per
// version family and referenced from every client tree; a client tree adds only its own `self`.
//
// Decisions the spec leaves open, made here:
// - Clients: one entry per address whose owner (src/model/serving.ts: a listed managed container with that
//   primary IP; running first, then newest, then highest id — the rule DNS uses) is on this host. Containers
//   of other hosts ask their own agent; from here they get `default`.
// - O(change): the builder is kept with its answers (MetaIndex); updateMetadataAnswers re-renders only the
//   objects a StateDelta reaches, then the lists and this host's client trees.
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
import { insertSorted, sortedIndex } from '../common/sorted.js';
import type { Container, Host, LaunchConfig, PortSpec, Service, Stack } from '../model/resources.js';
import { AddressOwners, isListed } from '../model/serving.js';
import { IncrementalRenderer, NeedsFullRender, type RenderIndex } from '../model/incremental.js';
import type { EnvState, StateDelta } from '../model/state.js';
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
  /** `<service id>\u0000<launch config name>`. */
  key: string;
}

type Family = 'old' | 'new';
const familyOf = (v: MetadataVersion): Family => (v === '2016-07-29' ? 'new' : 'old');

type Dirty = Set<string> | 'all';

const has = (d: Dirty, id: string): boolean => d === 'all' || d.has(id);

/** The position of `c` (by id) in a list sorted by byNameThenUuid; -1 when it is not there. */
function indexOfSorted(list: readonly Container[], c: Container): number {
  // From the first element not before c, look for the id (names and uuids may repeat).
  for (let i = sortedIndex(list, c, byNameThenUuid, 'lower'); i < list.length && byNameThenUuid(list[i]!, c) === 0; i++) {
    if (list[i]!.id === c.id) return i;
  }
  return list.findIndex((x) => x.id === c.id);
}

const unitOrder = (a: Container, b: Container): number => (a.serviceIndex ?? 0) - (b.serviceIndex ?? 0) || byNameThenUuid(a, b);

/**
 * The metadata renderer and what it built, kept so that a change costs what it touches: the listed
 * containers in order, per unit, their objects per version family, the service objects per version and the
 * address owners. Service-level structure (hosts, stacks, entries, links) is re-derived per render: it is
 * O(services), not O(containers). Client trees are built for this host's clients only (the owners of their
 * addresses on this host, by the rule of src/model/serving.ts — the one DNS uses).
 */
class MetaIndex implements RenderIndex<Answers, MetadataTreeOptions> {
  private readonly seen = new Map<string, Container>();
  private readonly sorted: Container[] = [];
  private readonly byUnit = new Map<string, Container[]>();
  private readonly containerObjs: Record<Family, Map<string, JsonMap>> = { old: new Map(), new: new Map() };
  /**
   * Per family, the objects of `sorted` in its order (the top-level `containers` list): kept in step with
   * `sorted` once the first render built them, so a render copies it instead of looking up every container.
   */
  private readonly containerLists: Record<Family, JsonMap[]> = { old: [], new: [] };
  private listsBuilt = false;
  /** This host's clients: the owner of each address whose owner is on this host (kept per touched address). */
  private readonly clientByIp = new Map<string, Container>();
  /** clientByIp's containers in byNameThenUuid order; undefined when it changed since. */
  private clientsSorted: Container[] | undefined;
  /** Per version and unit, the `self/service` object (its service object with the token) and the object it was made from. */
  private readonly selfServiceCache = new Map<MetadataVersion, Map<string, { from: JsonMap; self: JsonMap }>>();
  private readonly svcCache = new Map<MetadataVersion, Map<string, JsonMap>>();
  private readonly metadataCache = new Map<string, JsonMap>();
  private readonly tokens = new Map<string, string>();
  /** The service of each service link and the container of each container link, as last rendered. */
  private linkOwner = new Map<string, string>();
  private clinkOwner = new Map<string, string>();
  readonly owners = new AddressOwners();
  answers!: Answers;

  constructor(
    readonly state: EnvState,
    readonly opts: MetadataTreeOptions,
  ) {
    for (const c of state.containers.values()) this.indexContainer(c.id, c);
    this.render('all', 'all');
  }

  accepts(opts: MetadataTreeOptions): boolean {
    return opts.hostId === this.opts.hostId && opts.tokenKey === this.opts.tokenKey;
  }

  private unitKey(c: Container): string | undefined {
    return c.serviceId === null ? undefined : `${c.serviceId}\u0000${c.launchConfigName}`;
  }

  private indexContainer(id: string, c: Container | undefined): void {
    const old = this.seen.get(id);
    if (old) {
      if (isListed(old)) {
        const at = indexOfSorted(this.sorted, old);
        if (at >= 0) {
          this.sorted.splice(at, 1);
          if (this.listsBuilt) {
            this.containerLists.old.splice(at, 1);
            this.containerLists.new.splice(at, 1);
          }
        }
        const k = this.unitKey(old);
        const list = k === undefined ? undefined : this.byUnit.get(k);
        if (list) {
          const i = list.findIndex((x) => x.id === id);
          if (i >= 0) list.splice(i, 1);
          if (list.length === 0) this.byUnit.delete(k!);
        }
      }
      this.seen.delete(id);
    }
    for (const ip of this.owners.update(id, c)) {
      const o = this.owners.owner(ip);
      if (o && o.hostId === this.opts.hostId) {
        if (this.clientByIp.get(ip) !== o) {
          this.clientByIp.set(ip, o);
          this.clientsSorted = undefined;
        }
      } else if (this.clientByIp.delete(ip)) this.clientsSorted = undefined;
    }
    if (!c) return;
    this.seen.set(id, c);
    if (!isListed(c)) return;
    const at = sortedIndex(this.sorted, c, byNameThenUuid);
    this.sorted.splice(at, 0, c);
    // A listed container is always among the render's dirty ones (apply notes it): its object goes here then.
    if (this.listsBuilt) {
      this.containerLists.old.splice(at, 0, EMPTY_MAP);
      this.containerLists.new.splice(at, 0, EMPTY_MAP);
    }
    const k = this.unitKey(c);
    if (k !== undefined) {
      let list = this.byUnit.get(k);
      if (!list) this.byUnit.set(k, (list = []));
      insertSorted(list, c, unitOrder);
    }
  }

  /** Applies a non-full delta; throws NeedsFullRender for what only a full build handles. */
  apply(delta: StateDelta): Answers {
    const st = this.state;
    const ctr = new Set<string>();
    const svc = new Set<string>();
    const noteContainer = (c: Container | undefined): void => {
      if (!c) return;
      ctr.add(c.id);
      if (c.serviceId !== null) svc.add(c.serviceId);
    };
    const linkedTo = (targetId: string): void => {
      for (const l of st.containerLinks.values()) if (l.targetContainerId === targetId) noteContainer(this.seen.get(l.containerId));
    };
    for (const t of delta.touched) {
      switch (t.kind) {
        case 'container': {
          const old = this.seen.get(t.id);
          const cur = t.op === 'upsert' ? st.containers.get(t.id) : undefined;
          noteContainer(old);
          this.indexContainer(t.id, cur);
          noteContainer(cur);
          // A link to a container shows its uuid: links to a container that came or went change.
          if (!old !== !cur) linkedTo(t.id);
          break;
        }
        case 'host':
          for (const c of this.sorted) if (c.hostId === t.id) noteContainer(c);
          break;
        case 'service':
          svc.add(t.id);
          for (const c of this.sorted) if (c.serviceId === t.id) noteContainer(c);
          // Links and balancer rules name the service (its name, its stack).
          for (const l of st.serviceLinks.values()) if (l.consumedServiceId === t.id) svc.add(l.serviceId);
          for (const s of st.services.values()) if (s.lbConfig?.portRules.some((r) => r.serviceId === t.id)) svc.add(s.id);
          this.metadataCache.delete(t.id);
          break;
        case 'serviceLink': {
          // The link's service (its `links`): the old and the new form name it; a link's service never moves.
          const old = this.linkOwner.get(t.id);
          const cur = st.serviceLinks.get(t.id);
          if (old !== undefined) svc.add(old);
          if (cur) svc.add(cur.serviceId);
          break;
        }
        case 'containerLink': {
          const old = this.clinkOwner.get(t.id);
          const cur = st.containerLinks.get(t.id);
          if (old !== undefined) noteContainer(this.seen.get(old));
          if (cur) noteContainer(this.seen.get(cur.containerId));
          break;
        }
        case 'stack':
          throw new NeedsFullRender();
        case 'certificate':
          break;
      }
    }
    this.render(ctr, svc);
    return this.answers;
  }

  private render(dirtyCtr: Dirty, dirtySvc: Dirty): void {
    const state = this.state;
    const opts = this.opts;
    const env = state.environment;
    const tokenKey = opts.tokenKey;
    const version = metadataVersionString(state, opts.hostId);
    const managedNetworkUuid = deriveUuid(`${env.uuid}:managed-network`);

    // ---- What is listed (service level: O(hosts + stacks + services + links)).
    const hosts = [...state.hosts.values()].filter((h) => !GONE_STATES.has(h.state)).sort(byNameThenUuid);
    const hostById = new Map(hosts.map((h) => [h.id, h]));
    const stacks = [...state.stacks.values()].filter((s) => !GONE_STATES.has(s.state)).sort(byNameThenUuid);
    const stackById = new Map(stacks.map((s) => [s.id, s]));
    const services = [...state.services.values()]
      .filter((s) => !GONE_STATES.has(s.state) && stackById.has(s.stackId))
      .sort(byNameThenUuid);
    const serviceById = new Map(services.map((s) => [s.id, s]));
    // Tokens of services that are gone: forgotten once they outnumber the living (amortised O(1) per render).
    if (this.tokens.size > 2 * services.length + 16) {
      const living = new Set(services.map((s) => s.uuid));
      for (const uuid of this.tokens.keys()) if (!living.has(uuid)) this.tokens.delete(uuid);
    }
    const containers = this.sorted;

    const containerLinks = new Map<string, [string, string][]>();
    this.linkOwner = new Map([...state.serviceLinks.values()].map((l) => [l.id, l.serviceId]));
    this.clinkOwner = new Map([...state.containerLinks.values()].map((l) => [l.id, l.containerId]));
    for (const l of state.containerLinks.values()) {
      const target = state.containers.get(l.targetContainerId)?.uuid;
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
        const key = `${service.id}\u0000${lcName}`;
        const e: ServiceEntry = { service, stack, lcName, lc, containers: this.byUnit.get(key) ?? [], key };
        entries.push(e);
        entryByUnit.set(key, e);
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
    for (const f of ['old', 'new'] as const) {
      for (const h of hosts) hostObjs[f].set(h.id, hostObj(h, f));
      const objs = this.containerObjs[f];
      if (dirtyCtr === 'all') {
        objs.clear();
        const list: JsonMap[] = new Array<JsonMap>(containers.length);
        for (let i = 0; i < containers.length; i++) {
          const c = containers[i]!;
          const o = containerObj(c, f);
          objs.set(c.id, o);
          list[i] = o;
        }
        this.containerLists[f] = list;
      } else {
        const list = this.containerLists[f];
        for (const id of dirtyCtr) {
          const c = state.containers.get(id);
          if (c && isListed(c)) {
            const o = containerObj(c, f);
            objs.set(id, o);
            const at = indexOfSorted(containers, c);
            if (at >= 0) list[at] = o;
          } else objs.delete(id);
        }
      }
    }
    this.listsBuilt = true;

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

    const userMetadata = (s: Service): JsonMap => {
      let m = this.metadataCache.get(s.id);
      if (m === undefined) this.metadataCache.set(s.id, (m = jsonSafeMap(s.metadata)));
      return m;
    };

    const serviceObj = (e: ServiceEntry, v: MetadataVersion): JsonMap => {
      const f = familyOf(v);
      const nm = lower(f);
      const { service: s, stack, lc } = e;
      const objs = this.containerObjs[f];
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

    // ---- Trees per version.
    const tokenOf = (uuid: string): string | null => {
      if (tokenKey === undefined || tokenKey === '') return null;
      let t = this.tokens.get(uuid);
      if (t === undefined) this.tokens.set(uuid, (t = serviceToken(tokenKey, uuid)));
      return t;
    };
    // This host's clients: the owner of each address, when it is on this host.
    const clients = (this.clientsSorted ??= [...this.clientByIp.values()].sort(byNameThenUuid));
    // Per client, what its trees refer to (the same in every version).
    const clientRows = clients.map((c) => {
      const e = c.serviceId !== null ? entryByUnit.get(`${c.serviceId}\u0000${c.launchConfigName}`) : undefined;
      return { c, e, stackId: e ? e.stack.id : c.stackId };
    });
    const out: Answers = {};
    for (const v of METADATA_VERSIONS) {
      const f = familyOf(v);
      const nm = lower(f);
      // Replaced below by this render's objects: nothing to clear for a full render.
      const cache = dirtySvc === 'all' ? undefined : this.svcCache.get(v);
      const next = new Map<string, JsonMap>();
      const svcObjs = new Map<ServiceEntry, JsonMap>();
      for (const e of entries) {
        let o = has(dirtySvc, e.service.id) ? undefined : cache?.get(e.key);
        o ??= serviceObj(e, v);
        next.set(e.key, o);
        svcObjs.set(e, o);
      }
      this.svcCache.set(v, next);
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
      const objs = this.containerObjs[f];
      const lists: TreeLists = {
        // A copy: the answers already served keep theirs (the index's list moves on with the next change).
        containers: this.containerLists[f].slice(),
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

      // `self/service` per unit: kept while its service object is the same (the token depends on its uuid only).
      const prevSelf = dirtySvc === 'all' ? undefined : this.selfServiceCache.get(v);
      const nextSelf = new Map<string, { from: JsonMap; self: JsonMap }>();
      for (const { c, e, stackId } of clientRows) {
        let selfService: JsonMap | null = null;
        if (e) {
          const from = svcObjs.get(e) as JsonMap;
          let s = nextSelf.get(e.key);
          if (s === undefined) {
            s = prevSelf?.get(e.key);
            if (s === undefined || s.from !== from) s = { from, self: { ...from, token: tokenOf(e.service.uuid) } };
            nextSelf.set(e.key, s);
          }
          selfService = s.self;
        }
        answers[c.primaryIpAddress as string] = clientTree(lists, {
          container: objs.get(c.id) as JsonMap,
          host: (c.hostId !== null ? hostObjs[f].get(c.hostId) : undefined) ?? null,
          service: selfService,
          stack: (stackId !== null ? stackObjs.get(stackId) : undefined) ?? null,
        });
      }
      this.selfServiceCache.set(v, nextSelf);
      out[v] = answers;
    }
    out[LATEST_VERSION] = out['2016-07-29'] as VersionAnswers;
    // Every client tree already carries all of default's top-level keys.
    this.answers = markNormalized(out);
  }
}

/** Answers kept with the index that built them, so that updateMetadataAnswers applies a delta in place. */
export const metadataRenderer = new IncrementalRenderer<Answers, MetadataTreeOptions>((state, opts) => {
  const index = new MetaIndex(state, opts);
  return { index, artefact: index.answers };
});

/**
 * Builds the answers (every version, `latest`, a `default` and one entry per address whose owner is a
 * container of this host).
 */
export function buildMetadataAnswers(state: EnvState, opts: MetadataTreeOptions): Answers {
  return metadataRenderer.build(state, opts);
}

/**
 * The answers after `delta` was applied to `state`: container objects of the touched containers (and of the
 * containers a touched host, service or link names), service objects of the touched services, the lists and
 * this host's client trees (every tree carries the new `version`). Falls back to buildMetadataAnswers for a
 * full delta, an environment or stack change, or answers it did not build from this state.
 */
export function updateMetadataAnswers(prev: Answers, state: EnvState, delta: StateDelta, opts: MetadataTreeOptions): Answers {
  return metadataRenderer.update(prev, state, delta, opts);
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
