// Pure renderers: environment state (or an answers file) → the prepared DnsData the server answers
// from. No I/O, no clocks: the same input gives the same output.
//
// Who sees what (spec "Who may resolve what"), per client = per managed container IP:
// - every client: rancher-metadata[.rancher.internal], its link aliases (`<alias>.rancher.internal`,
//   `<alias>.<clientStack>.rancher.internal`), its container links (`<linkName>.rancher.internal`), the
//   services it links to by name, its own service, its own service's sidekicks and containers, and PTR
//   for every managed IP of the environment (a server must be able to name the clients that connect to
//   it, which do not link to it);
// - `stack` scope adds every service, sidekick and container of its own stack; `environment` scope adds
//   every one of the environment.
// Clients that share everything that matters (scope, service, search list, upstreams, container links)
// share one view object; the stack and environment names live in shared tables under a small per-view
// overlay, so memory grows with services, not with containers × names.
//
// Shared rules (src/model/serving.ts): a service answers with ALL its serving containers (running and, under
// a health check, healthy; none when none is: never "the newest one anyway"); a container's own name and
// PTR stay while it runs; the client of an address is
// its owner (running, then newest, then id) when the owner is on this host — the same owner metadata uses.
//
// O(change): the renderer is kept with the data it built (a DnsIndex). updateDnsData applies a StateDelta
// to it: the touched resources, what depends on them (services of touched containers, dnsServices linking
// to them, containers on a touched host or sharing a touched container's network), their names in the shared
// tables (per name, the contributor of lowest rank wins: services, then containers oldest first), the PTR
// of the addresses whose owner changed, the overlays that name them and the clients whose view changed.
// A full delta, an environment or stack change, or a client with a search suffix outside the indexed ones
// renders everything again (buildDnsData). The full build is the same machinery from empty, so both agree.
import { insertSorted } from '../common/sorted.js';
import type { Container, Service } from '../model/resources.js';
import { RANCHER_SERVICES_IP } from '../model/labels.js';
import { AddressOwners, isListed, isRunningListed, isServingEndpoint } from '../model/serving.js';
import type { EnvState, StateDelta } from '../model/state.js';
import { IncrementalRenderer, NeedsFullRender, type RenderIndex } from '../model/incremental.js';
import { prepareAnswers, type AnswersFile, type PreparedSection, type RecordSpec } from './answers.js';
import {
  aRecords,
  nameTarget,
  NameTable,
  parseUpstream,
  txtRecords,
  zone,
  type ARecords,
  type ClientView,
  type DnsData,
  type LookupPass,
  type NameRecords,
  type NameTarget,
  type SrvRecords,
  type Upstream,
} from './data.js';
import { ipv4ToInt, reverseName } from './wire.js';

export const RANCHER_ZONE = 'rancher.internal';
export const METADATA_IP = RANCHER_SERVICES_IP;
export const DEFAULT_LOCAL_TTL = 1;

export interface BuildDnsOptions {
  /** Only containers on this host are clients (names still cover the whole environment). */
  hostId?: string | undefined;
  /** TTL of local answers, seconds (default 1). */
  ttl?: number | undefined;
}

const LABEL_OK = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Whether a lower-case name can be a key (and be encoded): labels of 1–63 sane characters. */
function validName(name: string): boolean {
  return name.length <= 253 && name.split('.').every((l) => LABEL_OK.test(l));
}

function byAge(a: Container, b: Container): number {
  return a.createIndex - b.createIndex || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** A container's own upstreams: its `dns` minus the metadata address and loopback (its own netns). */
function containerUpstreams(dns: readonly string[]): Upstream[] {
  const out: Upstream[] = [];
  for (const d of dns) {
    const u = parseUpstream(d);
    if (!u) continue;
    if (u.host === METADATA_IP || u.host.startsWith('127.') || u.host === '::1') continue;
    if (!out.some((x) => x.key === u.key)) out.push(u);
  }
  return out;
}

function setIfAbsent(m: Map<string, NameRecords>, name: string, rec: NameRecords | undefined): void {
  if (rec && !m.has(name) && validName(name)) m.set(name, rec);
}

function removeFrom<T>(list: T[] | undefined, pred: (x: T) => boolean): void {
  if (!list) return;
  const i = list.findIndex(pred);
  if (i >= 0) list.splice(i, 1);
}

const svcKey = (id: string): string => `s:${id}`;
const ctrKey = (id: string): string => `c:${id}`;

/** The names one source (a service or a container) puts in the scope tables, and its rank among contributors. */
interface Contribution {
  readonly stackId: string | null;
  readonly rank: string;
  readonly entries: ReadonlyMap<string, NameRecords>;
}

/** A scope table (environment, or one stack) merged from contributions: per name, the lowest rank wins. */
class MergedTable {
  readonly table: NameTable;
  private readonly by = new Map<string, string[]>();

  constructor(
    private readonly contribs: ReadonlyMap<string, Contribution>,
    suffixes: Iterable<string>,
  ) {
    this.table = new NameTable(new Map(), suffixes, RANCHER_ZONE);
  }

  add(key: string, c: Contribution): void {
    for (const [name, rec] of c.entries) {
      let list = this.by.get(name);
      if (!list) this.by.set(name, (list = []));
      insertSorted(list, key, (a, b) => {
        const ra = this.contribs.get(a)!.rank;
        const rb = this.contribs.get(b)!.rank;
        return ra < rb ? -1 : ra > rb ? 1 : 0;
      });
      if (list[0] === key) this.table.set(name, rec);
    }
  }

  remove(key: string, c: Contribution): void {
    for (const name of c.entries.keys()) {
      const list = this.by.get(name);
      if (!list) continue;
      const i = list.indexOf(key);
      if (i < 0) continue;
      list.splice(i, 1);
      if (list.length === 0) {
        this.by.delete(name);
        this.table.delete(name);
      } else if (i === 0) {
        this.table.set(name, this.contribs.get(list[0]!)!.entries.get(name)!);
      }
    }
  }
}

/** One shared client view: the clients with one signature, and what its overlay names (for invalidation). */
interface ViewSlot {
  readonly view: { passes: LookupPass[]; search: readonly string[]; recurse: readonly Upstream[] };
  readonly ips: Set<string>;
  deps: string[];
}

/**
 * The environment renderer and everything it built, kept so that a change costs what it touches. Its
 * indexes cover listed containers and non-removed services; its memos are invalidated per service or
 * container by `apply`.
 */
class DnsIndex implements RenderIndex<DnsData, BuildDnsOptions> {
  readonly services = new Map<string, Service>();
  readonly stacks = new Map<string, string>();
  readonly containers = new Map<string, Container>();
  /** Every container's last seen form (listed or not), to know what a removal or change undoes. */
  private readonly seen = new Map<string, Container>();
  /** Listed containers by service, oldest first. */
  private readonly byService = new Map<string, Container[]>();
  /** Containers in `container:<ref>` network mode, by ref (an id or a name). */
  private readonly modeRefs = new Map<string, Set<string>>();
  private readonly hostMode = new Set<string>();
  private readonly svcMemo = new Map<string, Map<string, NameRecords>>();
  private readonly chosenMemo = new Map<string, Map<string, Container[]>>();
  private readonly srvMemo = new Map<string, Map<string, NameRecords>>();
  private readonly ctrMemo = new Map<string, NameRecords | undefined>();
  private readonly links = new Map<string, { serviceId: string; consumedServiceId: string; name: string }>();
  private readonly linksBy = new Map<string, { id: string; consumedServiceId: string; name: string }[]>();
  /** consumed service → services linking to it. */
  private readonly linkedFrom = new Map<string, Set<string>>();
  private readonly clinks = new Map<string, { containerId: string; targetContainerId: string; name: string }>();
  readonly containerLinksBy = new Map<string, { id: string; targetContainerId: string; name: string }[]>();
  readonly owners = new AddressOwners();
  readonly metadata: NameRecords;
  readonly scope: string;
  readonly ttl: number;
  readonly hostId: string | undefined;

  // Built artefacts.
  private readonly contribs = new Map<string, Contribution>();
  private readonly scoped: boolean;
  private envTable: MergedTable | undefined;
  private readonly stackTables = new Map<string, MergedTable>();
  private readonly ptr = new NameTable(new Map());
  private readonly slots = new Map<string, ViewSlot>();
  private readonly depIndex = new Map<string, Set<string>>();
  private readonly clientSig = new Map<string, string>();
  readonly clients = new Map<string, ClientView>();
  /** Search suffixes outside the zone the shared tables index (the clients' own dns_search). */
  private readonly extraSuffixes: ReadonlySet<string>;
  fallback!: ClientView;
  data!: DnsData;

  constructor(
    readonly state: EnvState,
    opts: BuildDnsOptions,
  ) {
    this.ttl = opts.ttl ?? DEFAULT_LOCAL_TTL;
    this.hostId = opts.hostId;
    this.scope = state.environment.network.dnsScope;
    this.scoped = this.scope !== 'linked' || state.environment.network.hostDnsView;
    this.metadata = { a: aRecords([METADATA_IP], this.ttl) };
    for (const s of state.stacks.values()) if (s.state !== 'removed') this.stacks.set(s.id, s.name.toLowerCase());
    for (const s of state.services.values()) if (s.state !== 'removed') this.services.set(s.id, s);
    for (const c of state.containers.values()) this.indexContainer(c.id, c);
    for (const l of state.serviceLinks.values()) this.indexLink(l.id, l);
    for (const l of state.containerLinks.values()) this.indexContainerLink(l.id, l);
    const extra = new Set<string>();
    for (const c of this.containers.values()) {
      if (!this.isClient(c)) continue;
      for (const x of this.searchOf(c)) if (!this.zoneSuffix(x)) extra.add(x);
    }
    this.extraSuffixes = extra;
    if (this.scoped) {
      for (const s of this.services.values()) this.setContribution(svcKey(s.id), this.serviceContribution(s));
      for (const c of this.containers.values()) this.setContribution(ctrKey(c.id), this.containerContribution(c));
    }
    for (const ip of this.owners.addresses()) {
      this.refreshPtr(ip);
      this.refreshClient(ip);
    }
    const meta = new NameTable(
      new Map([
        ['rancher-metadata', this.metadata],
        [`rancher-metadata.${RANCHER_ZONE}`, this.metadata],
      ]),
      [RANCHER_ZONE],
    );
    this.fallback = state.environment.network.hostDnsView
      ? { passes: [{ tables: [meta, this.env().table, this.ptr], search: [RANCHER_ZONE] }], search: [RANCHER_ZONE], recurse: [] }
      : { passes: [{ tables: [meta], search: [] }], search: [], recurse: [] };
    this.publish();
  }

  private zoneSuffix(x: string): boolean {
    return x === RANCHER_ZONE || x.endsWith(`.${RANCHER_ZONE}`);
  }

  publish(): DnsData {
    this.data = { serial: this.state.revision >>> 0, ttl: this.ttl, zones: [zone(RANCHER_ZONE)], clients: this.clients, fallback: this.fallback };
    return this.data;
  }

  // ---- Indexes

  private indexContainer(id: string, c: Container | undefined): void {
    const old = this.seen.get(id);
    if (old) {
      if (this.containers.delete(id) && old.serviceId) removeFrom(this.byService.get(old.serviceId), (x) => x.id === id);
      const ref = old.config.networkMode.startsWith('container:') ? old.config.networkMode.slice('container:'.length) : undefined;
      if (ref !== undefined) this.modeRefs.get(ref)?.delete(id);
      this.hostMode.delete(id);
      this.seen.delete(id);
    }
    if (!c) {
      this.owners.update(id, undefined);
      return;
    }
    this.seen.set(id, c);
    this.owners.update(id, c);
    if (!isListed(c)) return;
    this.containers.set(id, c);
    if (c.serviceId) {
      let l = this.byService.get(c.serviceId);
      if (!l) this.byService.set(c.serviceId, (l = []));
      insertSorted(l, c, byAge);
    }
    const mode = c.config.networkMode;
    if (mode === 'host') this.hostMode.add(id);
    if (mode.startsWith('container:')) {
      const ref = mode.slice('container:'.length);
      let set = this.modeRefs.get(ref);
      if (!set) this.modeRefs.set(ref, (set = new Set()));
      set.add(id);
    }
  }

  private linkOrder = (a: { name: string; consumedServiceId: string }, b: { name: string; consumedServiceId: string }): number =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : a.consumedServiceId < b.consumedServiceId ? -1 : a.consumedServiceId > b.consumedServiceId ? 1 : 0;

  private indexLink(id: string, l: { serviceId: string; consumedServiceId: string; name: string } | undefined): void {
    const old = this.links.get(id);
    if (old) {
      removeFrom(this.linksBy.get(old.serviceId), (x) => x.id === id);
      this.linkedFrom.get(old.consumedServiceId)?.delete(old.serviceId);
      this.links.delete(id);
      // Another link between the same two services keeps the reverse edge.
      for (const x of this.linksBy.get(old.serviceId) ?? []) if (x.consumedServiceId === old.consumedServiceId) this.addLinkedFrom(old.consumedServiceId, old.serviceId);
    }
    if (!l) return;
    this.links.set(id, { serviceId: l.serviceId, consumedServiceId: l.consumedServiceId, name: l.name });
    let a = this.linksBy.get(l.serviceId);
    if (!a) this.linksBy.set(l.serviceId, (a = []));
    insertSorted(a, { id, consumedServiceId: l.consumedServiceId, name: l.name }, this.linkOrder);
    this.addLinkedFrom(l.consumedServiceId, l.serviceId);
  }

  private addLinkedFrom(consumed: string, by: string): void {
    let s = this.linkedFrom.get(consumed);
    if (!s) this.linkedFrom.set(consumed, (s = new Set()));
    s.add(by);
  }

  private indexContainerLink(id: string, l: { containerId: string; targetContainerId: string; name: string } | undefined): void {
    const old = this.clinks.get(id);
    if (old) {
      const list = this.containerLinksBy.get(old.containerId);
      removeFrom(list, (x) => x.id === id);
      if (list?.length === 0) this.containerLinksBy.delete(old.containerId);
      this.clinks.delete(id);
    }
    if (!l) return;
    this.clinks.set(id, { containerId: l.containerId, targetContainerId: l.targetContainerId, name: l.name });
    let a = this.containerLinksBy.get(l.containerId);
    if (!a) this.containerLinksBy.set(l.containerId, (a = []));
    insertSorted(a, { id, targetContainerId: l.targetContainerId, name: l.name }, (x, y) =>
      x.name < y.name ? -1 : x.name > y.name ? 1 : x.id < y.id ? -1 : x.id > y.id ? 1 : 0,
    );
  }

  // ---- Records (memoised per service / container)

  /** A container's IPv4 address (its own, its host's, or its network-mode target's); invalid ones count as none. */
  ipOf(c: Container): string | undefined {
    const ip = this.rawIpOf(c, 0);
    return ip !== undefined && ipv4ToInt(ip) >= 0 ? ip : undefined;
  }

  private modeTarget(ref: string): Container | undefined {
    const byId = this.containers.get(ref);
    if (byId) return byId;
    let best: Container | undefined;
    for (const x of this.containers.values()) if (x.name === ref && (best === undefined || byAge(x, best) < 0)) best = x;
    return best;
  }

  private rawIpOf(c: Container, depth: number): string | undefined {
    if (c.primaryIpAddress) return c.primaryIpAddress;
    const mode = c.config.networkMode;
    if (mode === 'host') return c.hostId ? this.state.hosts.get(c.hostId)?.agentIpAddress : undefined;
    if (mode.startsWith('container:') && depth < 4) {
      const target = this.modeTarget(mode.slice('container:'.length));
      return target ? this.rawIpOf(target, depth + 1) : undefined;
    }
    return undefined;
  }

  vipOf(s: Service): string | undefined {
    return s.vip && ipv4ToInt(s.vip) >= 0 ? s.vip : undefined;
  }

  serviceFqdn(s: Service): string | undefined {
    const st = this.stacks.get(s.stackId);
    return st ? `${s.name.toLowerCase()}.${st}.${RANCHER_ZONE}` : undefined;
  }

  containerFqdn(c: Container): string {
    return `${c.name.toLowerCase()}.${RANCHER_ZONE}`;
  }

  private memo<T>(m: Map<string, Map<string, T>>, id: string): Map<string, T> {
    let x = m.get(id);
    if (!x) m.set(id, (x = new Map()));
    return x;
  }

  /** The containers a service (or one of its sidekicks) answers with: every serving one with an address. */
  chosen(s: Service, lc: string): Container[] {
    const memo = this.memo(this.chosenMemo, s.id);
    let out = memo.get(lc);
    if (out) return out;
    out = (this.byService.get(s.id) ?? []).filter((c) => c.launchConfigName === lc && isServingEndpoint(c, s) && this.ipOf(c));
    memo.set(lc, out);
    return out;
  }

  containerRecords(c: Container): NameRecords | undefined {
    if (this.ctrMemo.has(c.id)) return this.ctrMemo.get(c.id);
    // A container's own name is its identity (as its PTR): it resolves while it runs, checked or not;
    // only the service names (the endpoints) follow the serving rule.
    const ip = isRunningListed(c) ? this.ipOf(c) : undefined;
    const rec = ip ? { a: aRecords([ip], this.ttl) } : undefined;
    this.ctrMemo.set(c.id, rec);
    return rec;
  }

  serviceRecords(s: Service, lc = '', seen: Set<string> = new Set()): NameRecords {
    const memo = this.memo(this.svcMemo, s.id);
    const hit = memo.get(lc);
    if (hit) return hit;
    let rec: NameRecords;
    const vip = this.vipOf(s);
    if (s.kind === 'externalService') {
      if (s.hostname) {
        // A hostname that is not a valid domain name: the service name exists with no records.
        let target: NameTarget | undefined;
        try {
          target = nameTarget(s.hostname, this.ttl);
        } catch {
          target = undefined;
        }
        rec = target ? { cname: target } : {};
      } else {
        const ips = s.externalIpAddresses.filter((ip) => ipv4ToInt(ip) >= 0);
        rec = ips.length > 0 ? { a: aRecords(ips, this.ttl) } : {};
      }
    } else if (s.kind === 'dnsService') {
      rec = this.aliasRecords(s, seen);
    } else if (vip && lc === '') {
      rec = { a: aRecords([vip], this.ttl) };
    } else {
      const ips = [...new Set(this.chosen(s, lc).map((c) => this.ipOf(c)!))];
      rec = ips.length > 0 ? { a: aRecords(ips, this.ttl) } : {};
    }
    memo.set(lc, rec);
    return rec;
  }

  /** A dnsService: the union of its linked services' A records; a lone CNAME when that is all there is. */
  private aliasRecords(s: Service, seen: Set<string>): NameRecords {
    if (seen.has(s.id)) return {};
    seen.add(s.id);
    const ips: string[] = [];
    const cnames: NameRecords[] = [];
    for (const l of this.linksOf(s.id)) {
      const t = this.services.get(l.consumedServiceId);
      if (!t) continue;
      const r = this.serviceRecords(t, '', seen);
      if (r.a) for (const ip of r.a.ips) if (!ips.includes(ip)) ips.push(ip);
      if (r.cname) cnames.push(r);
    }
    if (ips.length > 0) return { a: aRecords(ips, this.ttl) };
    if (cnames.length === 1) return cnames[0]!;
    return {};
  }

  linksOf(serviceId: string): readonly { consumedServiceId: string; name: string }[] {
    return this.linksBy.get(serviceId) ?? [];
  }

  /** Exposed and published ports of a service's launch config (services and balancers only). */
  ports(s: Service, lc: string): { port: number; proto: string }[] {
    if (s.kind !== 'service' && s.kind !== 'loadBalancerService') return [];
    const cfg = lc === '' ? s.launchConfig : s.secondaryLaunchConfigs.find((x) => x.name === lc);
    if (!cfg) return [];
    const out: { port: number; proto: string }[] = [];
    for (const p of [...cfg.ports, ...cfg.expose]) {
      if (!out.some((x) => x.port === p.privatePort && x.proto === p.protocol)) out.push({ port: p.privatePort, proto: p.protocol });
    }
    return out;
  }

  srv(s: Service, lc: string, port: number): NameRecords {
    const memo = this.memo(this.srvMemo, s.id);
    const key = `${lc}/${port}`;
    const hit = memo.get(key);
    if (hit) return hit;
    let r: SrvRecords;
    const fqdn = this.serviceFqdn(s);
    const vip = this.vipOf(s);
    if (vip && lc === '' && fqdn) {
      r = { records: [{ priority: 0, weight: 0, port, target: fqdn }], ttl: this.ttl, additional: [{ name: fqdn, a: aRecords([vip], this.ttl) }] };
    } else {
      const targets = this.chosen(s, lc).filter((c) => validName(this.containerFqdn(c)));
      r = {
        records: targets.map((c) => ({ priority: 0, weight: 0, port, target: this.containerFqdn(c) })),
        ttl: this.ttl,
        additional: targets.map((c) => ({ name: this.containerFqdn(c), a: aRecords([this.ipOf(c)!], this.ttl) })),
      };
    }
    const rec = { srv: r };
    memo.set(key, rec);
    return rec;
  }

  /** Adds a service name (and its SRV names) to a table under construction. */
  addService(m: Map<string, NameRecords>, name: string, s: Service, lc = ''): void {
    setIfAbsent(m, name, this.serviceRecords(s, lc));
    for (const p of this.ports(s, lc)) setIfAbsent(m, `_${p.port}._${p.proto}.${name}`, this.srv(s, lc, p.port));
  }

  /** A service's canonical names: the service and its sidekicks. */
  addServiceCanonical(m: Map<string, NameRecords>, s: Service): void {
    const fqdn = this.serviceFqdn(s);
    if (!fqdn) return;
    this.addService(m, fqdn, s);
    for (const sk of s.secondaryLaunchConfigs) {
      if (sk.name) this.addService(m, `${sk.name.toLowerCase()}.${fqdn}`, s, sk.name);
    }
  }

  addContainer(m: Map<string, NameRecords>, c: Container, name = c.name): void {
    setIfAbsent(m, `${name.toLowerCase()}.${RANCHER_ZONE}`, this.containerRecords(c));
  }

  // ---- Scope tables

  private serviceContribution(s: Service): Contribution {
    const m = new Map<string, NameRecords>();
    this.addServiceCanonical(m, s);
    return { stackId: s.stackId, rank: `0\u0000${s.id}`, entries: m };
  }

  private containerContribution(c: Container): Contribution {
    const m = new Map<string, NameRecords>();
    this.addContainer(m, c);
    const ci = String(c.createIndex + 1e12).padStart(16, '0');
    return { stackId: c.stackId, rank: `1\u0000${ci}\u0000${c.name}\u0000${c.id}`, entries: m };
  }

  /** Replaces a source's contribution (undefined: the source is gone) in every table that exists. */
  private setContribution(key: string, next: Contribution | undefined): void {
    const old = this.contribs.get(key);
    if (old) {
      this.envTable?.remove(key, old);
      if (old.stackId !== null) this.stackTables.get(old.stackId)?.remove(key, old);
    }
    if (!next || next.entries.size === 0) {
      this.contribs.delete(key);
      return;
    }
    this.contribs.set(key, next);
    this.envTable?.add(key, next);
    if (next.stackId !== null) this.stackTables.get(next.stackId)?.add(key, next);
  }

  private env(): MergedTable {
    if (!this.envTable) {
      this.envTable = new MergedTable(this.contribs, this.extraSuffixes);
      for (const [k, c] of this.contribs) this.envTable.add(k, c);
    }
    return this.envTable;
  }

  private stackTable(id: string): MergedTable {
    let t = this.stackTables.get(id);
    if (!t) {
      this.stackTables.set(id, (t = new MergedTable(this.contribs, this.extraSuffixes)));
      for (const [k, c] of this.contribs) if (c.stackId === id) t.add(k, c);
    }
    return t;
  }

  // ---- PTR and clients

  private refreshPtr(ip: string): void {
    const rev = reverseName(ip);
    if (!rev) return;
    const o = this.owners.owner(ip);
    const target = o ? this.containerFqdn(o) : '';
    // validName checked it: no need for nameTarget's encoding check
    if (o && isRunningListed(o) && validName(target)) this.ptr.set(rev, { ptr: { target, ttl: this.ttl } });
    else this.ptr.delete(rev);
  }

  private isClient(c: Container): boolean {
    return (this.hostId === undefined || c.hostId === this.hostId) && this.owners.owns(c);
  }

  private readonly searchMemo = new Map<string, string[]>();
  private readonly upstreamMemo = new Map<string, Upstream[]>();

  /** A container's own upstreams (memoised: most containers share their `dns` list). */
  upstreamsOf(c: Container): Upstream[] {
    const key = c.config.dns.join(' ');
    let u = this.upstreamMemo.get(key);
    if (!u) this.upstreamMemo.set(key, (u = containerUpstreams(c.config.dns)));
    return u;
  }

  searchOf(c: Container): string[] {
    const key = `${c.stackId ?? ''}|${c.serviceId ?? ''}|${c.config.dnsSearch.join(' ')}`;
    let s = this.searchMemo.get(key);
    if (!s) this.searchMemo.set(key, (s = this.computeSearch(c)));
    return s;
  }

  private computeSearch(c: Container): string[] {
    const stack = c.stackId ? this.stacks.get(c.stackId) : undefined;
    const svc = c.serviceId ? this.services.get(c.serviceId) : undefined;
    const out: string[] = [];
    if (stack) out.push(`${stack}.${RANCHER_ZONE}`);
    if (stack && svc) out.push(`${svc.name.toLowerCase()}.${stack}.${RANCHER_ZONE}`);
    out.push(RANCHER_ZONE);
    for (const d of c.config.dnsSearch) {
      const n = d.toLowerCase().replace(/^\.+|\.+$/g, '');
      if (n && !out.includes(n)) out.push(n);
    }
    return out;
  }

  private sigOf(c: Container): string {
    const search = this.searchOf(c);
    const recurse = this.upstreamsOf(c);
    const hasLinks = this.containerLinksBy.has(c.id);
    // A service the state no longer lists: the overlay names the container itself, so its view is its own.
    const who = c.serviceId && this.services.has(c.serviceId) ? `s:${c.serviceId}` : `c:${c.id}`;
    return [this.scope, who, c.stackId ?? '', hasLinks ? c.id : '', search.join(','), recurse.map((u) => u.key).join(',')].join('|');
  }

  /** Points the client of `ip` (its owner, when on this host) at its view; drops it otherwise. */
  private refreshClient(ip: string): void {
    const o = this.owners.owner(ip);
    const c = o && this.containers.has(o.id) && this.isClient(o) ? o : undefined;
    const sig = c ? this.sigOf(c) : undefined;
    const old = this.clientSig.get(ip);
    if (old === sig && (sig === undefined || this.clients.has(ip))) return;
    if (old !== undefined) {
      const slot = this.slots.get(old);
      slot?.ips.delete(ip);
      if (slot && slot.ips.size === 0) this.dropSlot(old, slot);
      this.clientSig.delete(ip);
      this.clients.delete(ip);
    }
    if (!c || sig === undefined) return;
    for (const x of this.searchOf(c)) if (!this.zoneSuffix(x) && !this.extraSuffixes.has(x)) throw new NeedsFullRender();
    let slot = this.slots.get(sig);
    if (!slot) {
      const search = this.searchOf(c);
      slot = { view: { passes: [], search, recurse: this.upstreamsOf(c) }, ips: new Set(), deps: [] };
      this.slots.set(sig, slot);
      this.buildOverlay(sig, slot, c);
    }
    slot.ips.add(ip);
    this.clientSig.set(ip, sig);
    this.clients.set(ip, slot.view);
  }

  private dropSlot(sig: string, slot: ViewSlot): void {
    for (const d of slot.deps) this.depIndex.get(d)?.delete(sig);
    this.slots.delete(sig);
  }

  /** The per-client names (see the header comment), in precedence order, and what they depend on. */
  private buildOverlay(sig: string, slot: ViewSlot, c: Container): void {
    for (const d of slot.deps) this.depIndex.get(d)?.delete(sig);
    const deps = new Set<string>();
    const m = new Map<string, NameRecords>();
    m.set('rancher-metadata', this.metadata);
    m.set(`rancher-metadata.${RANCHER_ZONE}`, this.metadata);
    const stack = c.stackId ? this.stacks.get(c.stackId) : undefined;
    const own = c.serviceId ? this.services.get(c.serviceId) : undefined;
    if (c.serviceId) deps.add(svcKey(c.serviceId));
    deps.add(ctrKey(c.id));
    const links = own ? this.linksOf(own.id) : [];
    // Link aliases first: they shadow same-named services.
    for (const l of links) {
      deps.add(svcKey(l.consumedServiceId));
      const t = this.services.get(l.consumedServiceId);
      if (!t || !l.name) continue;
      const alias = l.name.toLowerCase();
      this.addService(m, `${alias}.${RANCHER_ZONE}`, t);
      if (stack) this.addService(m, `${alias}.${stack}.${RANCHER_ZONE}`, t);
    }
    const clinks = this.containerLinksBy.get(c.id) ?? [];
    for (const l of clinks) {
      deps.add(ctrKey(l.targetContainerId));
      const t = this.containers.get(l.targetContainerId);
      if (t && l.name) this.addContainer(m, t, l.name);
    }
    for (const l of links) {
      const t = this.services.get(l.consumedServiceId);
      const fqdn = t && this.serviceFqdn(t);
      if (t && fqdn) this.addService(m, fqdn, t);
    }
    for (const l of clinks) {
      const t = this.containers.get(l.targetContainerId);
      if (t) this.addContainer(m, t);
    }
    if (own) {
      this.addServiceCanonical(m, own);
      for (const x of this.byService.get(own.id) ?? []) this.addContainer(m, x);
    } else {
      this.addContainer(m, c);
    }
    const search = slot.view.search;
    const tables: NameTable[] = [new NameTable(m, search)];
    if (this.scope === 'environment') tables.push(this.env().table);
    else if (this.scope === 'stack' && c.stackId) tables.push(this.stackTable(c.stackId).table);
    tables.push(this.ptr);
    slot.view.passes = [{ tables, search }];
    slot.deps = [...deps];
    for (const d of slot.deps) {
      let s = this.depIndex.get(d);
      if (!s) this.depIndex.set(d, (s = new Set()));
      s.add(sig);
    }
  }

  accepts(opts: BuildDnsOptions): boolean {
    return opts.hostId === this.hostId && (opts.ttl ?? DEFAULT_LOCAL_TTL) === this.ttl;
  }

  // ---- Changes

  /** Applies a (non-full) delta to the index and everything built from it. */
  apply(delta: StateDelta): DnsData {
    const st = this.state;
    const dirtySvc = new Set<string>();
    const dirtyCtr = new Set<string>();
    const clientDirty = new Set<string>();
    const ips = new Set<string>();
    const noteContainer = (c: Container | undefined): void => {
      if (!c) return;
      dirtyCtr.add(c.id);
      if (c.serviceId) dirtySvc.add(c.serviceId);
      if (c.primaryIpAddress) ips.add(c.primaryIpAddress);
    };
    // Containers whose address comes from one that changed (network mode container:<id|name>), transitively.
    const dependents = (c: Container | undefined, depth: number): void => {
      if (!c || depth > 4) return;
      for (const ref of [c.id, c.name]) {
        for (const id of this.modeRefs.get(ref) ?? []) {
          if (dirtyCtr.has(id)) continue;
          const d = this.containers.get(id);
          noteContainer(d);
          dependents(d, depth + 1);
        }
      }
    };
    for (const t of delta.touched) {
      switch (t.kind) {
        case 'container': {
          const old = this.seen.get(t.id);
          const cur = t.op === 'upsert' ? st.containers.get(t.id) : undefined;
          noteContainer(old);
          dependents(old, 1);
          this.indexContainer(t.id, cur);
          noteContainer(cur);
          dependents(cur, 1);
          if (old) clientDirty.add(old.id);
          break;
        }
        case 'service': {
          const cur = t.op === 'upsert' ? st.services.get(t.id) : undefined;
          if (cur && cur.state !== 'removed') this.services.set(t.id, cur);
          else this.services.delete(t.id);
          dirtySvc.add(t.id);
          this.searchMemo.clear();
          for (const c of this.byService.get(t.id) ?? []) {
            noteContainer(c);
            dependents(c, 1);
          }
          break;
        }
        case 'host': {
          for (const id of this.hostMode) {
            const c = this.containers.get(id);
            if (c && c.hostId === t.id) {
              noteContainer(c);
              dependents(c, 1);
            }
          }
          break;
        }
        case 'serviceLink': {
          const old = this.links.get(t.id);
          const cur = t.op === 'upsert' ? st.serviceLinks.get(t.id) : undefined;
          if (old) dirtySvc.add(old.serviceId);
          this.indexLink(t.id, cur);
          if (cur) dirtySvc.add(cur.serviceId);
          break;
        }
        case 'containerLink': {
          const old = this.clinks.get(t.id);
          const cur = t.op === 'upsert' ? st.containerLinks.get(t.id) : undefined;
          this.indexContainerLink(t.id, cur);
          for (const id of [old?.containerId, cur?.containerId]) {
            if (id === undefined) continue;
            dirtyCtr.add(id);
            const c = this.containers.get(id);
            if (c?.primaryIpAddress) ips.add(c.primaryIpAddress);
          }
          break;
        }
        case 'stack':
          throw new NeedsFullRender();
        case 'certificate':
          break;
      }
    }
    // dnsServices answer with the services they link to: a change reaches them, transitively.
    const queue = [...dirtySvc];
    while (queue.length > 0) {
      const id = queue.pop()!;
      for (const by of this.linkedFrom.get(id) ?? []) {
        if (dirtySvc.has(by)) continue;
        if (this.services.get(by)?.kind !== 'dnsService') continue;
        dirtySvc.add(by);
        queue.push(by);
      }
    }
    for (const id of dirtySvc) {
      this.svcMemo.delete(id);
      this.chosenMemo.delete(id);
      this.srvMemo.delete(id);
    }
    for (const id of dirtyCtr) this.ctrMemo.delete(id);
    if (this.scoped) {
      for (const id of dirtySvc) {
        const s = this.services.get(id);
        this.setContribution(svcKey(id), s ? this.serviceContribution(s) : undefined);
      }
      for (const id of dirtyCtr) {
        const c = this.containers.get(id);
        this.setContribution(ctrKey(id), c ? this.containerContribution(c) : undefined);
      }
    }
    for (const id of clientDirty) {
      const c = this.containers.get(id);
      if (c?.primaryIpAddress) ips.add(c.primaryIpAddress);
    }
    for (const ip of ips) {
      this.refreshPtr(ip);
      this.refreshClient(ip);
    }
    const rebuild = new Set<string>();
    for (const id of dirtySvc) for (const sig of this.depIndex.get(svcKey(id)) ?? []) rebuild.add(sig);
    for (const id of dirtyCtr) for (const sig of this.depIndex.get(ctrKey(id)) ?? []) rebuild.add(sig);
    for (const sig of rebuild) {
      const slot = this.slots.get(sig);
      if (!slot) continue;
      const ip = slot.ips.values().next().value as string;
      this.buildOverlay(sig, slot, this.owners.owner(ip)!);
    }
    return this.publish();
  }
}

/** DNS data kept with the index that built it, so that updateDnsData applies a delta in place. */
export const dnsRenderer = new IncrementalRenderer<DnsData, BuildDnsOptions>((state, opts) => {
  const index = new DnsIndex(state, opts);
  return { index, artefact: index.data };
});

/** Renders the environment's DNS data for the agent of one host (or, without hostId, for every host). */
export function buildDnsData(state: EnvState, opts: BuildDnsOptions = {}): DnsData {
  return dnsRenderer.build(state, opts);
}

/**
 * The next DNS data after `delta` was applied to `state`: only what the touched resources reach is
 * rendered again (see the header). A full delta, an environment or stack change, data not built from
 * this very state object, or other options build in full (src/model/incremental.ts).
 */
export function updateDnsData(prev: DnsData, state: EnvState, delta: StateDelta, opts: BuildDnsOptions = {}): DnsData {
  return dnsRenderer.update(prev, state, delta, opts);
}

// ---------------------------------------------------------------------------------------------------
// Standalone: an answers file

function specRecords(spec: RecordSpec, ttl: number): NameRecords {
  const out: { -readonly [K in keyof NameRecords]: NameRecords[K] } = {};
  if (spec.a) out.a = aRecords(spec.a.ips, spec.a.ttl ?? ttl);
  if (spec.cname) out.cname = nameTarget(spec.cname.target, spec.cname.ttl ?? ttl);
  if (spec.ptr) out.ptr = nameTarget(spec.ptr.target, spec.ptr.ttl ?? ttl);
  if (spec.txt) out.txt = txtRecords(spec.txt.texts, spec.txt.ttl ?? ttl);
  return out;
}

function sectionTable(s: PreparedSection, ttl: number, suffixes: ReadonlySet<string>): NameTable {
  const m = new Map<string, NameRecords>();
  for (const [name, spec] of s.records) m.set(name, specRecords(spec, ttl));
  return new NameTable(m, suffixes);
}

let answersSerial = 0;

/**
 * Renders an answers file. Lookups try the client's section with its search list, then `default`
 * with the client's search list, then `default` with its own; `authoritative` comes from `default`.
 * A client recurses to its own `recurse` list, then to default's.
 */
export function buildDnsDataFromAnswers(file: AnswersFile, opts: { ttl?: number } = {}): DnsData {
  const ttl = opts.ttl ?? DEFAULT_LOCAL_TTL;
  const p = prepareAnswers(file);
  const suffixes = new Set<string>(p.default.search);
  for (const s of p.clients.values()) for (const x of s.search) suffixes.add(x);
  const def = sectionTable(p.default, ttl, suffixes);
  const fallback: ClientView = { passes: [{ tables: [def], search: p.default.search }], search: p.default.search, recurse: p.default.recurse };
  const clients = new Map<string, ClientView>();
  for (const [ip, s] of p.clients) {
    const search = s.search.length > 0 ? s.search : p.default.search;
    const passes: LookupPass[] = [{ tables: [sectionTable(s, ttl, suffixes)], search }];
    passes.push({ tables: [def], search });
    if (search.join(',') !== p.default.search.join(',')) passes.push({ tables: [def], search: p.default.search });
    const recurse = [...s.recurse];
    for (const u of p.default.recurse) if (!recurse.some((x) => x.key === u.key)) recurse.push(u);
    clients.set(ip, { passes, search, recurse });
  }
  answersSerial = Math.max(answersSerial + 1, Math.floor(Date.now() / 1000));
  return { serial: answersSerial >>> 0, ttl, zones: p.default.authoritative.map(zone), clients, fallback };
}

// ---------------------------------------------------------------------------------------------------
// Introspection (tests, debugging)

export interface RecordsDump {
  a?: string[];
  cname?: string;
  ptr?: string;
  txt?: string[];
  srv?: string[];
}

export interface ViewDump {
  search: string[];
  recurse: string[];
  names: Record<string, RecordsDump>;
}

function dumpA(a: ARecords): string[] {
  return [...a.ips].sort();
}

export function dumpRecords(r: NameRecords): RecordsDump {
  const out: RecordsDump = {};
  if (r.a) out.a = dumpA(r.a);
  if (r.cname) out.cname = r.cname.target;
  if (r.ptr) out.ptr = r.ptr.target;
  if (r.txt) out.txt = [...r.txt.texts];
  if (r.srv) out.srv = r.srv.records.map((x) => `${x.priority} ${x.weight} ${x.port} ${x.target}`).sort();
  return out;
}

/** Every exact name a client can resolve (first table wins, as in lookups), sorted. */
export function dumpClientView(data: DnsData, clientIp: string): ViewDump {
  const view = data.clients.get(clientIp) ?? data.fallback;
  const names = new Map<string, RecordsDump>();
  for (const pass of view.passes) {
    for (const t of pass.tables) {
      for (const [k, v] of t.exact) if (!names.has(k)) names.set(k, dumpRecords(v));
    }
  }
  return {
    search: [...view.search],
    recurse: view.recurse.map((u) => u.key),
    names: Object.fromEntries([...names].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  };
}
