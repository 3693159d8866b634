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
import type { Container, Service } from '../model/resources.js';
import type { EnvState } from '../model/state.js';
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
export const METADATA_IP = '169.254.169.250';
export const DEFAULT_LOCAL_TTL = 1;

export interface BuildDnsOptions {
  /** Only containers on this host are clients (names still cover the whole environment). */
  hostId?: string;
  /** TTL of local answers, seconds (default 1). */
  ttl?: number;
}

const LABEL_OK = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Whether a lower-case name can be a key (and be encoded): labels of 1–63 sane characters. */
function validName(name: string): boolean {
  return name.length <= 253 && name.split('.').every((l) => LABEL_OK.test(l));
}

function isLive(c: Container): boolean {
  return c.desiredState !== 'removed' && c.generation !== 'previous';
}

function isActive(c: Container): boolean {
  return isLive(c) && (c.state === 'running' || c.state === 'starting');
}

function isHealthy(c: Container): boolean {
  return c.healthState === null || c.healthState === 'healthy';
}

function byAge(a: Container, b: Container): number {
  return a.createIndex - b.createIndex || a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
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

class EnvRenderer {
  readonly services = new Map<string, Service>();
  readonly stacks = new Map<string, string>();
  readonly containers = new Map<string, Container>();
  /** Live containers by service, oldest first. */
  private readonly byService = new Map<string, Container[]>();
  private readonly svcMemo = new Map<string, NameRecords>();
  private readonly chosenMemo = new Map<string, Container[]>();
  private readonly ctrMemo = new Map<string, NameRecords | undefined>();
  private readonly srvMemo = new Map<string, NameRecords>();
  private readonly linksBy = new Map<string, { consumedServiceId: string; name: string }[]>();
  readonly containerLinksBy = new Map<string, { targetContainerId: string; name: string }[]>();
  readonly metadata: NameRecords;

  constructor(
    readonly state: EnvState,
    readonly ttl: number,
  ) {
    for (const s of state.stacks.values()) if (s.state !== 'removed') this.stacks.set(s.id, s.name.toLowerCase());
    for (const s of state.services.values()) if (s.state !== 'removed') this.services.set(s.id, s);
    const live = [...state.containers.values()].filter(isLive).sort(byAge);
    for (const c of live) {
      this.containers.set(c.id, c);
      if (c.serviceId) {
        let l = this.byService.get(c.serviceId);
        if (!l) this.byService.set(c.serviceId, (l = []));
        l.push(c);
      }
    }
    this.metadata = { a: aRecords([METADATA_IP], ttl) };
    const links = [...state.serviceLinks.values()].sort(
      (a, b) => a.name.localeCompare(b.name) || a.consumedServiceId.localeCompare(b.consumedServiceId),
    );
    for (const l of links) {
      let a = this.linksBy.get(l.serviceId);
      if (!a) this.linksBy.set(l.serviceId, (a = []));
      a.push(l);
    }
    const clinks = [...state.containerLinks.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    for (const l of clinks) {
      let a = this.containerLinksBy.get(l.containerId);
      if (!a) this.containerLinksBy.set(l.containerId, (a = []));
      a.push(l);
    }
  }

  /** A container's IPv4 address (its own, its host's, or its network-mode target's); invalid ones count as none. */
  ipOf(c: Container): string | undefined {
    const ip = this.rawIpOf(c, 0);
    return ip !== undefined && ipv4ToInt(ip) >= 0 ? ip : undefined;
  }

  private rawIpOf(c: Container, depth: number): string | undefined {
    if (c.primaryIpAddress) return c.primaryIpAddress;
    const mode = c.config.networkMode;
    if (mode === 'host') return c.hostId ? this.state.hosts.get(c.hostId)?.agentIpAddress : undefined;
    if (mode.startsWith('container:') && depth < 4) {
      const ref = mode.slice('container:'.length);
      const target = this.containers.get(ref) ?? [...this.containers.values()].find((x) => x.name === ref);
      return target ? this.rawIpOf(target, depth + 1) : undefined;
    }
    return undefined;
  }

  vipOf(s: Service): string | undefined {
    return s.vip && ipv4ToInt(s.vip) >= 0 ? s.vip : undefined;
  }

  stackOf(s: Service): string | undefined {
    return this.stacks.get(s.stackId);
  }

  serviceFqdn(s: Service): string | undefined {
    const st = this.stackOf(s);
    return st ? `${s.name.toLowerCase()}.${st}.${RANCHER_ZONE}` : undefined;
  }

  containerFqdn(c: Container): string {
    return `${c.name.toLowerCase()}.${RANCHER_ZONE}`;
  }

  /** The containers a service (or one of its sidekicks) answers with: active and healthy, else the newest. */
  chosen(s: Service, lc: string): Container[] {
    const key = `${s.id}/${lc}`;
    let out = this.chosenMemo.get(key);
    if (out) return out;
    const cands = (this.byService.get(s.id) ?? []).filter((c) => c.launchConfigName === lc && isActive(c) && this.ipOf(c));
    const healthy = cands.filter(isHealthy);
    out = healthy.length > 0 ? healthy : cands.length > 0 ? [cands[cands.length - 1]!] : [];
    this.chosenMemo.set(key, out);
    return out;
  }

  containerRecords(c: Container): NameRecords | undefined {
    if (this.ctrMemo.has(c.id)) return this.ctrMemo.get(c.id);
    const ip = isActive(c) ? this.ipOf(c) : undefined;
    const rec = ip ? { a: aRecords([ip], this.ttl) } : undefined;
    this.ctrMemo.set(c.id, rec);
    return rec;
  }

  serviceRecords(s: Service, lc = '', seen: Set<string> = new Set()): NameRecords {
    const key = `${s.id}/${lc}`;
    const memo = this.svcMemo.get(key);
    if (memo) return memo;
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
    this.svcMemo.set(key, rec);
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
    const key = `${s.id}/${lc}/${port}`;
    const memo = this.srvMemo.get(key);
    if (memo) return memo;
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
    this.srvMemo.set(key, rec);
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

  /** Every service, sidekick and container of the environment, or of one stack. */
  scopeEntries(stackId?: string): Map<string, NameRecords> {
    const m = new Map<string, NameRecords>();
    for (const s of this.services.values()) if (stackId === undefined || s.stackId === stackId) this.addServiceCanonical(m, s);
    for (const c of this.containers.values()) if (stackId === undefined || c.stackId === stackId) this.addContainer(m, c);
    return m;
  }

  ptrEntries(): Map<string, NameRecords> {
    const m = new Map<string, NameRecords>();
    for (const c of this.containers.values()) {
      if (c.config.networkMode !== 'managed' || !c.primaryIpAddress || !isActive(c)) continue;
      const rev = reverseName(c.primaryIpAddress);
      const target = this.containerFqdn(c);
      // validName checked it: no need for nameTarget's encoding check
      if (rev && validName(target) && !m.has(rev)) m.set(rev, { ptr: { target, ttl: this.ttl } });
    }
    return m;
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

  /** The per-client names (see the header comment), in precedence order. */
  overlayEntries(c: Container): Map<string, NameRecords> {
    const m = new Map<string, NameRecords>();
    m.set('rancher-metadata', this.metadata);
    m.set(`rancher-metadata.${RANCHER_ZONE}`, this.metadata);
    const stack = c.stackId ? this.stacks.get(c.stackId) : undefined;
    const own = c.serviceId ? this.services.get(c.serviceId) : undefined;
    const links = own ? this.linksOf(own.id) : [];
    // Link aliases first: they shadow same-named services.
    for (const l of links) {
      const t = this.services.get(l.consumedServiceId);
      if (!t || !l.name) continue;
      const alias = l.name.toLowerCase();
      this.addService(m, `${alias}.${RANCHER_ZONE}`, t);
      if (stack) this.addService(m, `${alias}.${stack}.${RANCHER_ZONE}`, t);
    }
    const clinks = this.containerLinksBy.get(c.id) ?? [];
    for (const l of clinks) {
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
    return m;
  }
}

/** Renders the environment's DNS data for the agent of one host (or, without hostId, for every host). */
export function buildDnsData(state: EnvState, opts: BuildDnsOptions = {}): DnsData {
  const ttl = opts.ttl ?? DEFAULT_LOCAL_TTL;
  const r = new EnvRenderer(state, ttl);
  const scope = state.environment.network.dnsScope;

  // Clients first: their search lists decide which suffix indexes the shared tables need.
  interface Desc {
    c: Container;
    search: string[];
    recurse: Upstream[];
    sig: string;
  }
  const descs: Desc[] = [];
  for (const c of r.containers.values()) {
    if (opts.hostId !== undefined && c.hostId !== opts.hostId) continue;
    if (c.config.networkMode !== 'managed' || !c.primaryIpAddress) continue;
    const search = r.searchOf(c);
    const recurse = r.upstreamsOf(c);
    const hasLinks = r.containerLinksBy.has(c.id);
    const who = c.serviceId ? `s:${c.serviceId}` : `c:${c.id}`;
    const sig = [scope, who, hasLinks ? c.id : '', search.join(','), recurse.map((u) => u.key).join(',')].join('|');
    descs.push({ c, search, recurse, sig });
  }
  const allSuffixes = new Set<string>([RANCHER_ZONE]);
  for (const d of descs) for (const s of d.search) allSuffixes.add(s);

  const ptrTable = new NameTable(r.ptrEntries());
  let envTable: NameTable | undefined;
  const env = (): NameTable => (envTable ??= new NameTable(r.scopeEntries(), allSuffixes));
  const stackTables = new Map<string, NameTable>();
  const stackTable = (id: string): NameTable => {
    let t = stackTables.get(id);
    if (!t) stackTables.set(id, (t = new NameTable(r.scopeEntries(id), allSuffixes)));
    return t;
  };

  const views = new Map<string, ClientView>();
  const clients = new Map<string, ClientView>();
  const owner = new Map<string, Container>();
  for (const d of descs) {
    let view = views.get(d.sig);
    if (!view) {
      const overlay = new NameTable(r.overlayEntries(d.c), d.search);
      const tables: NameTable[] = [overlay];
      if (scope === 'environment') tables.push(env());
      else if (scope === 'stack' && d.c.stackId) tables.push(stackTable(d.c.stackId));
      tables.push(ptrTable);
      view = { passes: [{ tables, search: d.search }], search: d.search, recurse: d.recurse };
      views.set(d.sig, view);
    }
    const ip = d.c.primaryIpAddress!;
    const prev = owner.get(ip);
    // Two live containers with one IP (a stale record): the active one wins.
    if (prev && isActive(prev) && !isActive(d.c)) continue;
    owner.set(ip, d.c);
    clients.set(ip, view);
  }

  const meta = new NameTable(
    new Map([
      ['rancher-metadata', r.metadata],
      [`rancher-metadata.${RANCHER_ZONE}`, r.metadata],
    ]),
    [RANCHER_ZONE],
  );
  const fallback: ClientView = state.environment.network.hostDnsView
    ? { passes: [{ tables: [meta, env(), ptrTable], search: [RANCHER_ZONE] }], search: [RANCHER_ZONE], recurse: [] }
    : { passes: [{ tables: [meta], search: [] }], search: [], recurse: [] };

  return { serial: state.revision >>> 0, ttl, zones: [zone(RANCHER_ZONE)], clients, fallback };
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
