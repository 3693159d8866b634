// The balancer's HAProxy configuration, rendered (pure) from one balancer service's port rules resolved to
// target endpoints, its certificates and its custom config. See ../../../../../shared/spec/loadbalancer.md.
//
// Shape of the output:
// - `global` / `defaults` with the original's defaults, `default-path config` so that every relative file
//   (certificates) is found beside the config file: a versioned directory is self-contained, and
//   `haproxy -c -f <dir>/haproxy.cfg` checks exactly what will run.
// - `listen default` on the reserved health port (42): a TCP connect there says "the balancer is up".
// - One `frontend` per source port. http/https: `mode http`, ACLs on the Host header (exact, `*.x` suffix,
//   `x.*` prefix, also with `:port`) and `path_beg`, X-Forwarded-For/Proto/Port. https/tls terminate TLS
//   with the default certificate first and the others for SNI (`strict-sni` when there is no default).
//   tcp: one backend with every target of the port. tls: terminated, then routed on the SNI name. sni:
//   not terminated, routed on the ClientHello's SNI (`req.ssl_sni`).
// - One `backend` per (source port, hostname, path) or per `backendName`, with FIXED server slots
//   (`s1`..`sN`, unused ones `disabled`): a change of endpoints only changes server lines, which the applier
//   puts in force through the runtime API (`set server … addr/state`) instead of a reload. The slot count
//   grows by powers of two (minimum `minSlots`) and never shrinks while `previousSlots` says it was larger,
//   and a target keeps its slot across renders when `previousSlots` is given: endpoint churn never changes
//   anything but server lines.
//
// Problems in the rules never make the render fail: a rule that cannot be served (udp — HAProxy 2.6 has no
// UDP proxying —, the reserved port 42, a protocol that conflicts with the port's other rules, TLS without
// any certificate) is left out with a warning naming it, and the rest is served.
import { createHash } from 'node:crypto';

export type BalancerProtocol = 'http' | 'https' | 'tcp' | 'tls' | 'sni' | 'udp';

export interface BalancerTarget {
  /** Container (or external) name: shown in a comment on the server line. */
  name: string;
  ip: string;
  /** The endpoint's port; absent: the rule's targetPort, else its sourcePort. */
  port?: number;
  /** Runs on this host (for only-local / prefer-local). */
  local?: boolean;
  /** false: health-checked and not healthy — not served. */
  healthy?: boolean;
}

/** The target service's health check (model HealthCheck), used for the servers' `check`. */
export interface BalancerHealthCheck {
  port?: number;
  interval?: number;
  responseTimeout?: number;
  healthyThreshold?: number;
  unhealthyThreshold?: number;
  /** e.g. `GET "/healthz" "HTTP/1.0"` (Rancher's form, quotes optional). */
  requestLine?: string;
}

export interface BalancerRule {
  sourcePort: number;
  protocol: BalancerProtocol;
  hostname?: string;
  path?: string;
  priority?: number;
  backendName?: string;
  targetPort?: number;
  targets: BalancerTarget[];
  healthCheck?: BalancerHealthCheck;
}

export interface BalancerCertificate {
  name: string;
  cert: string;
  key: string;
  chain?: string;
}

export interface BalancerStickiness {
  name?: string;
  cookie?: string;
  domain?: string;
  indirect?: boolean;
  nocache?: boolean;
  postonly?: boolean;
  mode?: 'rewrite' | 'insert' | 'prefix';
}

/** io.rancher.lb_service.target */
export type TargetPolicy = 'any' | 'only-local' | 'prefer-local';

/** Per backend, the target key (`ip:port`) in each slot, null for a free slot. */
export type SlotTable = Record<string, (string | null)[]>;

export interface BalancerInput {
  /** The balancer service's name (comments only). */
  name: string;
  rules: BalancerRule[];
  certificates?: BalancerCertificate[];
  /** Served to clients without SNI or with an unknown name; absent: `strict-sni`. */
  defaultCertificate?: BalancerCertificate;
  /** User HAProxy text (lb_config.config), merged per section. */
  customConfig?: string;
  stickiness?: BalancerStickiness;
  targetPolicy?: TargetPolicy;
  /** Source ports whose listeners accept the PROXY protocol (io.rancher.loadbalancer.proxy-protocol.ports). */
  proxyProtocolPorts?: number[];
  /** Addresses every frontend binds to; default `*`. */
  bindAddresses?: string[];
  /**
   * The address connections to servers leave from (`source` in defaults): the balancer's managed address,
   * so that targets on other hosts answer over the overlay (a host-chosen source — its underlay or a
   * link-local address — is not routable back from a container). Absent: the kernel picks.
   */
  sourceAddress?: string;
  /** The health listener's port; default 42 (tests use a high port). Never available as a source port. */
  healthPort?: number;
  /** The runtime API socket (admin level, `expose-fd listeners`): the applier's `statsSocket`. */
  statsSocket: string;
  /** Minimum server slots per backend; default 8. */
  minSlots?: number;
  /** The slot table of the last render in force: targets keep their slots, slot counts do not shrink. */
  previousSlots?: SlotTable;
}

export interface SlotState {
  server: string;
  /** Target key `ip:port`, null when the slot is free (disabled). */
  target: string | null;
  ip: string;
  port: number;
}

export interface RenderedBackend {
  name: string;
  slots: SlotState[];
}

export interface BalancerRender {
  config: string;
  /** Relative path (e.g. `certs/web.pem`) → content. */
  files: Record<string, string>;
  warnings: string[];
  backends: RenderedBackend[];
  slots: SlotTable;
}

/** The port reserved for the balancer's own health listener (`listen default`). */
export const RESERVED_HEALTH_PORT = 42;
export const DEFAULT_MIN_SLOTS = 8;
/** Address of a free slot: never connected to (the slot is `disabled`), replaced with `set server addr`. */
export const FREE_SLOT_ADDR = '127.0.0.1';
const FREE_SLOT_PORT = 1;

const IND = '    ';
const HOST_RE = /^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?$/;
// No whitespace, quotes, backslashes or `#`, and only printable ASCII: a path is one HAProxy word.
const PATH_RE = /^[!$%&(-[\]-~]*$/;
const IP_RE = /^(\d{1,3}(\.\d{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)$/;

export interface ConfigSection {
  header: string;
  lines: string[];
}

const DEFAULTS_GLOBAL = (input: BalancerInput): string[] => [
  'maxconn 4096',
  // Relative paths (certs/…) are relative to the config file's directory.
  'default-path config',
  `stats socket ${input.statsSocket} mode 600 level admin expose-fd listeners`,
  'stats timeout 2m',
  'tune.ssl.default-dh-param 2048',
  // No SSLv3 / TLS 1.0 (the original's `no-sslv3 no-tlsv10`).
  'ssl-default-bind-options ssl-min-ver TLSv1.1',
];

// `option forwardfor` is in the http frontends, not here: HAProxy 2.6 warns about it on every tcp proxy and
// refuses `no option forwardfor`, so a default would make every tcp balancer's check noisy.
//
// `option redispatch 1` (ours; the original had `option redispatch`, i.e. on the last retry only): a failed
// connect is retried on another server at once. HAProxy waits min(timeout connect, 1 s) before retrying
// the same server, so with the original's setting a container that just started (not listening yet) or
// just went away cost its requests a second or more each.
const DEFAULTS_DEFAULTS = [
  'mode tcp',
  'option redispatch 1',
  'option http-server-close',
  'retries 3',
  'timeout connect 5000',
  'timeout client 50000',
  'timeout server 50000',
];

function isWildcard(host: string): boolean {
  return host.startsWith('*.') || host.endsWith('.*');
}

/** Rule category in the order the spec gives (lower first): hostname+path, hostname, wildcard+path, wildcard, path, default. */
function category(host: string | undefined, path: string | undefined): number {
  if (host && !isWildcard(host)) return path ? 1 : 2;
  if (host) return path ? 3 : 4;
  return path ? 5 : 6;
}

/** HAProxy proxy names: letters, digits, `-_.:`; everything else becomes `_`, `*` becomes `any`. */
function safeName(s: string): string {
  return s.replace(/\*/g, 'any').replace(/[^A-Za-z0-9_.:-]/g, '_');
}

function shortHash(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 6);
}

function quoteArg(s: string): string {
  return /^[A-Za-z0-9_./:@%*+=,-]+$/.test(s) ? s : `"${s.replace(/(["\\$])/g, '\\$1')}"`;
}

function normHost(h: string | undefined): string | undefined {
  const t = h?.trim().toLowerCase();
  return t ? t : undefined;
}

function normPath(p: string | undefined): string | undefined {
  const t = p?.trim();
  if (!t) return undefined;
  return t.startsWith('/') ? t : `/${t}`;
}

function ruleLabel(r: BalancerRule): string {
  const hp = `${r.hostname ?? ''}${r.path ?? ''}`;
  return `${r.protocol} port ${r.sourcePort}${hp ? ` ${hp}` : ''}`;
}

interface BackendDraft {
  name: string;
  mode: 'http' | 'tcp';
  protocols: Set<BalancerProtocol>;
  targets: Map<string, { ip: string; port: number; name: string }>;
  healthCheck: BalancerHealthCheck | undefined;
  /** Where it is used (comment). */
  uses: string[];
}

interface RouteDraft {
  host: string | undefined;
  path: string | undefined;
  priority: number | undefined;
  backend: string;
  index: number;
}

interface FrontendDraft {
  port: number;
  protocol: Exclude<BalancerProtocol, 'udp'>;
  routes: RouteDraft[];
}

function modeOf(p: BalancerProtocol): 'http' | 'tcp' {
  return p === 'http' || p === 'https' ? 'http' : 'tcp';
}

function selectTargets(targets: BalancerTarget[], policy: TargetPolicy): BalancerTarget[] {
  const live = targets.filter((t) => t.healthy !== false);
  if (policy === 'only-local') return live.filter((t) => t.local);
  if (policy === 'prefer-local') {
    const local = live.filter((t) => t.local);
    return local.length ? local : live;
  }
  return live;
}

/** Rancher's request line `GET "/healthz" "HTTP/1.0"` as `option httpchk` arguments. */
function httpchkArgs(requestLine: string): string {
  const words = requestLine.match(/"[^"]*"|\S+/g) ?? [];
  return words.map((w) => quoteArg(w.replace(/^"|"$/g, ''))).join(' ');
}

function serverOptions(hc: BalancerHealthCheck | undefined, sticky: boolean, server: string): string {
  const o: string[] = [];
  if (hc) {
    o.push('check');
    if (hc.port) o.push(`port ${hc.port}`);
    if (hc.interval) o.push(`inter ${hc.interval}`);
    if (hc.healthyThreshold) o.push(`rise ${hc.healthyThreshold}`);
    if (hc.unhealthyThreshold) o.push(`fall ${hc.unhealthyThreshold}`);
  }
  if (sticky) o.push(`cookie ${server}`);
  return o.length ? ` ${o.join(' ')}` : '';
}

function slotCount(n: number, min: number, previous: number): number {
  let c = Math.max(min, 1);
  while (c < n) c *= 2;
  return Math.max(c, previous);
}

function assignSlots(keys: string[], count: number, previous: (string | null)[] | undefined): (string | null)[] {
  const slots: (string | null)[] = new Array<string | null>(count).fill(null);
  const want = new Set(keys);
  const placed = new Set<string>();
  (previous ?? []).forEach((k, i) => {
    if (k !== null && i < count && want.has(k) && !placed.has(k)) {
      slots[i] = k;
      placed.add(k);
    }
  });
  let free = 0;
  for (const k of keys) {
    if (placed.has(k)) continue;
    while (slots[free] !== null) free++;
    slots[free] = k;
    placed.add(k);
  }
  return slots;
}

function hostAcl(protocol: FrontendDraft['protocol'], host: string, port: number): string {
  if (protocol === 'tls' || protocol === 'sni') {
    const fetch = protocol === 'tls' ? 'ssl_fc_sni' : 'req.ssl_sni';
    if (host.startsWith('*.')) return `${fetch} -i -m end ${host.slice(1)}`;
    if (host.endsWith('.*')) return `${fetch} -i -m beg ${host.slice(0, -1)}`;
    return `${fetch} -i ${host}`;
  }
  if (host.startsWith('*.')) {
    const suffix = host.slice(1);
    return `hdr_end(host) -i ${suffix} ${suffix}:${port}`;
  }
  // `x.*`: the Host header starts with `x.` (with or without a port after the rest).
  if (host.endsWith('.*')) return `hdr_beg(host) -i ${host.slice(0, -1)}`;
  return `hdr(host) -i ${host} ${host}:${port}`;
}

// ---------------------------------------------------------------------------------------------------
// Custom config merge

const SECTION_KEYWORDS = new Set([
  'global',
  'defaults',
  'frontend',
  'backend',
  'listen',
  'resolvers',
  'userlist',
  'peers',
  'mailers',
  'program',
  'http-errors',
  'ring',
  'cache',
  'fcgi-app',
]);

// Keywords that may appear many times in a section: a user line with one of them is added, never a
// replacement of ours.
const REPEATABLE = new Set([
  'acl',
  'bind',
  'server',
  'server-template',
  'use_backend',
  'use-server',
  'http-request',
  'http-response',
  'http-after-response',
  'tcp-request',
  'tcp-response',
  'http-check',
  'tcp-check',
  'errorfile',
  'log',
  'capture',
  'stick',
  'redirect',
  'monitor',
  'filter',
  'nameserver',
  'user',
  'group',
  'peer',
  'lua-load',
  'setenv',
  'presetenv',
  'unsetenv',
]);

// Keywords whose second word is part of the key (`timeout client` does not replace `timeout server`).
const TWO_WORD = new Set(['option', 'timeout', 'stats']);

/** The key a line replaces by; undefined for lines that are always added. */
function lineKey(line: string): string | undefined {
  const w = line.trim().split(/\s+/);
  let first = w[0] ?? '';
  let rest = w.slice(1);
  if (first === 'no' || first === 'default') {
    first = rest[0] ?? '';
    rest = rest.slice(1);
  }
  if (!first || REPEATABLE.has(first)) return undefined;
  if (first === 'stats' && (rest[0] === 'socket' || rest[0] === 'bind-process')) return undefined;
  if (TWO_WORD.has(first)) return `${first} ${rest[0] ?? ''}`;
  return first;
}

function parseSections(text: string): { sections: ConfigSection[]; preamble: string[] } {
  const sections: ConfigSection[] = [];
  const preamble: string[] = [];
  let cur: ConfigSection | undefined;
  for (const raw of text.replace(/\r\n/g, '\n').split('\n')) {
    const line = raw.replace(/\s+$/, '');
    const trimmed = line.trim();
    if (!trimmed) continue;
    const first = trimmed.split(/\s+/)[0] ?? '';
    if (!/^\s/.test(line) && SECTION_KEYWORDS.has(first)) {
      cur = { header: trimmed.split(/\s+/).join(' '), lines: [] };
      sections.push(cur);
      continue;
    }
    if (cur) cur.lines.push(trimmed);
    else preamble.push(trimmed);
  }
  return { sections, preamble };
}

function sectionId(header: string): string {
  // `frontend web` and `frontend web from x` are the same section for merging; `global`/`defaults` by keyword
  // (an unnamed `defaults` merges into ours).
  const w = header.split(' ');
  return w[0] === 'global' || (w[0] === 'defaults' && (w.length === 1 || w[1] === 'from')) ? (w[0] ?? '') : `${w[0]} ${w[1] ?? ''}`;
}

/**
 * Merges the user's text into ours per section: a user line whose keyword (first word; first two for
 * `option`/`timeout`/`stats`, `no option x` counts as `option x`) is one of ours replaces ours (the first
 * one, in place; further such lines are added); repeatable keywords (acl, bind, server, http-request, …)
 * are added; a section we do not have is appended in the user's order. Lines of the user's text before
 * any section header go into `global`.
 */
export function mergeCustomConfig(ours: ConfigSection[], customText: string, warnings: string[]): ConfigSection[] {
  const { sections: user, preamble } = parseSections(customText);
  const out = ours.map((s) => ({ header: s.header, lines: [...s.lines] }));
  const byId = new Map(out.map((s) => [sectionId(s.header), s] as const));
  const merge = (target: ConfigSection, lines: string[]): void => {
    const replaced = new Set<string>();
    for (const l of lines) {
      const key = lineKey(l);
      if (key !== undefined && !replaced.has(key)) {
        const at = target.lines.findIndex((x) => lineKey(x) === key);
        if (at >= 0) {
          target.lines[at] = l;
          replaced.add(key);
          continue;
        }
      }
      target.lines.push(l);
    }
  };
  if (preamble.length) {
    const g = byId.get('global');
    if (g) merge(g, preamble);
    else warnings.push(`custom config: ${preamble.length} line(s) before any section ignored`);
  }
  for (const s of user) {
    const existing = byId.get(sectionId(s.header));
    if (existing) merge(existing, s.lines);
    else {
      const added = { header: s.header, lines: [...s.lines] };
      out.push(added);
      byId.set(sectionId(s.header), added);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------

function certFileNames(certs: BalancerCertificate[]): Map<string, string> {
  const used = new Set<string>();
  const out = new Map<string, string>();
  for (const c of certs) {
    let base = safeName(c.name).replace(/:/g, '_') || 'cert';
    if (used.has(base)) base = `${base}-${shortHash(c.name)}`;
    used.add(base);
    out.set(c.name, `certs/${base}.pem`);
  }
  return out;
}

function pem(c: BalancerCertificate): string {
  const parts = [c.cert, c.chain, c.key].filter((x): x is string => !!x && x.trim() !== '').map((x) => x.trim());
  return `${parts.join('\n')}\n`;
}

export function renderHaproxy(input: BalancerInput): BalancerRender {
  const warnings: string[] = [];
  const healthPort = input.healthPort ?? RESERVED_HEALTH_PORT;
  const binds = input.bindAddresses?.length ? input.bindAddresses : ['*'];
  const proxyPorts = new Set(input.proxyProtocolPorts ?? []);
  const policy = input.targetPolicy ?? 'any';
  const sticky = input.stickiness;

  // Certificates: the default first, then the others by name; a certificate given twice is written once.
  const allCerts: BalancerCertificate[] = [];
  const seen = new Set<string>();
  const certList = [...(input.certificates ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const c of [...(input.defaultCertificate ? [input.defaultCertificate] : []), ...certList]) {
    if (seen.has(c.name)) continue;
    seen.add(c.name);
    allCerts.push(c);
  }
  const certPaths = certFileNames(allCerts);
  const files: Record<string, string> = {};
  for (const c of allCerts) files[certPaths.get(c.name) ?? ''] = pem(c);

  // Rules → frontends (per source port) and backends.
  const frontends = new Map<number, FrontendDraft>();
  const backends = new Map<string, BackendDraft>();
  const usedBackendNames = new Set<string>();
  const autoNames = new Map<string, string>();

  input.rules.forEach((rule, index) => {
    const label = ruleLabel(rule);
    if (rule.hostname !== undefined && rule.hostname.trim() !== '' && !HOST_RE.test(rule.hostname.trim())) {
      warnings.push(`rule ${index} (${label}): hostname ${JSON.stringify(rule.hostname)} is not a host name (letters, digits, '-', '.', a leading '*.' or a trailing '.*'); rule ignored`);
      return;
    }
    if (rule.path !== undefined && !PATH_RE.test(rule.path)) {
      warnings.push(`rule ${index} (${label}): path ${JSON.stringify(rule.path)} has spaces, quotes or control characters; rule ignored`);
      return;
    }
    if (rule.protocol === 'udp') {
      warnings.push(`rule ${index} (${label}): udp is not supported (HAProxy 2.6 proxies TCP only); rule ignored`);
      return;
    }
    if (rule.sourcePort === RESERVED_HEALTH_PORT || rule.sourcePort === healthPort) {
      warnings.push(`rule ${index} (${label}): port ${rule.sourcePort} is reserved for the balancer's health check; rule ignored`);
      return;
    }
    if ((rule.protocol === 'https' || rule.protocol === 'tls') && allCerts.length === 0) {
      warnings.push(`rule ${index} (${label}): ${rule.protocol} needs a certificate and the balancer has none; rule ignored`);
      return;
    }
    let fe = frontends.get(rule.sourcePort);
    if (!fe) {
      fe = { port: rule.sourcePort, protocol: rule.protocol, routes: [] };
      frontends.set(rule.sourcePort, fe);
    } else if (fe.protocol !== rule.protocol) {
      warnings.push(`rule ${index} (${label}): port ${rule.sourcePort} already serves ${fe.protocol}; one port serves one protocol; rule ignored`);
      return;
    }
    // tcp routes on nothing: every rule of the port goes to one backend. tls/sni route on the SNI name
    // (hostname), never on a path.
    const host = rule.protocol === 'tcp' ? undefined : normHost(rule.hostname);
    const path = modeOf(rule.protocol) === 'http' ? normPath(rule.path) : undefined;
    if (rule.protocol !== 'tcp' && modeOf(rule.protocol) === 'tcp' && normPath(rule.path)) {
      warnings.push(`rule ${index} (${label}): ${rule.protocol} cannot route on a path; path ignored`);
    }

    let beName: string;
    if (rule.backendName) beName = safeName(rule.backendName);
    else {
      const key = `${rule.sourcePort}\u0000${host ?? ''}\u0000${path ?? ''}`;
      const known = autoNames.get(key);
      if (known) beName = known;
      else {
        let n = safeName(['be', String(rule.sourcePort), host, path?.replace(/^\//, '')].filter((x) => x !== undefined && x !== '').join('_'));
        if (usedBackendNames.has(n)) n = `${n}_${shortHash(key)}`;
        autoNames.set(key, n);
        beName = n;
      }
    }
    usedBackendNames.add(beName);
    let be = backends.get(beName);
    if (!be) {
      be = { name: beName, mode: modeOf(rule.protocol), protocols: new Set(), targets: new Map(), healthCheck: rule.healthCheck, uses: [] };
      backends.set(beName, be);
    } else if (be.mode !== modeOf(rule.protocol)) {
      warnings.push(`rule ${index} (${label}): backend ${beName} is already ${be.mode} mode; rule ignored`);
      return;
    }
    be.protocols.add(rule.protocol);
    be.healthCheck ??= rule.healthCheck;
    be.uses.push(label);
    for (const t of selectTargets(rule.targets, policy)) {
      if (!IP_RE.test(t.ip)) {
        warnings.push(`rule ${index} (${label}): target ${t.name} has no usable address (${JSON.stringify(t.ip)}); left out`);
        continue;
      }
      const port = t.port ?? rule.targetPort ?? rule.sourcePort;
      const key = `${t.ip}:${port}`;
      if (!be.targets.has(key)) be.targets.set(key, { ip: t.ip, port, name: t.name });
    }

    const existing = fe.routes.find((r) => r.backend === beName && r.host === host && r.path === path);
    if (existing) {
      if (rule.priority !== undefined && (existing.priority === undefined || rule.priority < existing.priority)) existing.priority = rule.priority;
      return;
    }
    fe.routes.push({ host, path, priority: rule.priority, backend: beName, index });
  });

  // ---- sections
  const sections: ConfigSection[] = [];
  sections.push({ header: 'global', lines: DEFAULTS_GLOBAL(input) });
  const source = input.sourceAddress;
  const sourceOk = source !== undefined && IP_RE.test(source);
  if (source !== undefined && !sourceOk) warnings.push(`source address ${JSON.stringify(source)} is not an IP address; the kernel picks one`);
  sections.push({ header: 'defaults', lines: [...DEFAULTS_DEFAULTS, ...(sourceOk ? [`source ${source}`] : [])] });
  sections.push({ header: 'listen default', lines: binds.map((a) => `bind ${a}:${healthPort}`) });

  const ports = [...frontends.keys()].sort((a, b) => a - b);
  for (const port of ports) {
    const fe = frontends.get(port);
    if (!fe) continue;
    const lines: string[] = [];
    const mode = modeOf(fe.protocol);
    const tlsTerm = fe.protocol === 'https' || fe.protocol === 'tls';
    let bindOpts = '';
    if (tlsTerm) {
      bindOpts = ` ssl ${allCerts.map((c) => `crt ${certPaths.get(c.name) ?? ''}`).join(' ')}${input.defaultCertificate ? '' : ' strict-sni'}`;
    }
    if (proxyPorts.has(port)) bindOpts += ' accept-proxy';
    for (const a of binds) lines.push(`bind ${a}:${port}${bindOpts}`);
    lines.push(`mode ${mode}`);
    if (mode === 'http') {
      lines.push('option forwardfor');
      const proto = fe.protocol === 'https' ? 'https' : 'http';
      lines.push(`http-request set-header X-Forwarded-Proto ${proto} if !{ req.hdr(X-Forwarded-Proto) -m found }`);
      lines.push('http-request set-header X-Forwarded-Port %[dst_port] if !{ req.hdr(X-Forwarded-Port) -m found }');
    }
    if (fe.protocol === 'sni') {
      lines.push('tcp-request inspect-delay 5s');
      lines.push('tcp-request content accept if { req.ssl_hello_type 1 }');
    }

    const routes = [...fe.routes].sort((a, b) => {
      const pa = a.priority !== undefined ? 0 : 1;
      const pb = b.priority !== undefined ? 0 : 1;
      if (pa !== pb) return pa - pb;
      if (a.priority !== undefined && b.priority !== undefined && a.priority !== b.priority) return a.priority - b.priority;
      const ca = category(a.host, a.path);
      const cb = category(b.host, b.path);
      if (ca !== cb) return ca - cb;
      const ha = a.host?.length ?? 0;
      const hb = b.host?.length ?? 0;
      if (ha !== hb) return hb - ha;
      const la = a.path?.length ?? 0;
      const lb = b.path?.length ?? 0;
      if (la !== lb) return lb - la;
      return a.index - b.index;
    });

    const acls = new Map<string, string>();
    const aclFor = (kind: 'host' | 'path', value: string): string => {
      const k = `${kind} ${value}`;
      let n = acls.get(k);
      if (!n) {
        n = `${kind}_${acls.size + 1}`;
        acls.set(k, n);
        lines.push(`acl ${n} ${kind === 'host' ? hostAcl(fe.protocol, value, port) : `path_beg ${quoteArg(value)}`}`);
      }
      return n;
    };
    const uses: string[] = [];
    let defaultBackend: string | undefined;
    for (const r of routes) {
      if (!r.host && !r.path) {
        if (defaultBackend === undefined) defaultBackend = r.backend;
        else if (defaultBackend !== r.backend) warnings.push(`port ${port}: more than one catch-all rule; ${r.backend} is never used (${defaultBackend} is the default)`);
        continue;
      }
      const conds: string[] = [];
      if (r.host) conds.push(aclFor('host', r.host));
      if (r.path) conds.push(aclFor('path', r.path));
      uses.push(`use_backend ${r.backend} if ${conds.join(' ')}`);
    }
    lines.push(...uses);
    if (defaultBackend) lines.push(`default_backend ${defaultBackend}`);
    sections.push({ header: `frontend ${safeName(`fe_${port}`)}`, lines });
  }

  const renderedBackends: RenderedBackend[] = [];
  const slotTable: SlotTable = {};
  const minSlots = input.minSlots ?? DEFAULT_MIN_SLOTS;
  for (const name of [...backends.keys()].sort()) {
    const be = backends.get(name);
    if (!be) continue;
    const lines: string[] = [`mode ${be.mode}`, 'balance roundrobin'];
    const isSticky = !!sticky && be.mode === 'http';
    if (isSticky) {
      const o = [`cookie ${quoteArg(sticky.cookie ?? sticky.name ?? 'lb')}`, sticky.mode ?? 'insert'];
      if (sticky.indirect) o.push('indirect');
      if (sticky.nocache) o.push('nocache');
      if (sticky.postonly) o.push('postonly');
      if (sticky.domain) o.push(`domain ${quoteArg(sticky.domain)}`);
      lines.push(o.join(' '));
    }
    const hc = be.healthCheck;
    if (hc?.requestLine?.trim()) lines.push(`option httpchk ${httpchkArgs(hc.requestLine.trim())}`);
    if (hc?.responseTimeout) lines.push(`timeout check ${hc.responseTimeout}`);
    const keys = [...be.targets.keys()].sort(compareEndpoint);
    const prev = input.previousSlots?.[name];
    const count = slotCount(keys.length, minSlots, prev?.length ?? 0);
    const table = assignSlots(keys, count, prev);
    const slotStates: SlotState[] = [];
    table.forEach((k, i) => {
      const server = `s${i + 1}`;
      const t = k === null ? undefined : be.targets.get(k);
      const ip = t?.ip ?? FREE_SLOT_ADDR;
      const p = t?.port ?? FREE_SLOT_PORT;
      slotStates.push({ server, target: k, ip, port: p });
      lines.push(`server ${server} ${ip.includes(':') ? `[${ip}]` : ip}:${p}${serverOptions(hc, isSticky, server)}${t ? ` # ${t.name.replace(/[^\x20-\x7e]/g, '?')}` : ' disabled'}`);
    });
    renderedBackends.push({ name, slots: slotStates });
    slotTable[name] = table;
    sections.push({ header: `backend ${name}`, lines });
  }

  const merged = input.customConfig?.trim() ? mergeCustomConfig(sections, input.customConfig, warnings) : sections;
  const out: string[] = [`# HAProxy configuration of balancer ${input.name}, generated by drover: edits are overwritten.`];
  for (const s of merged) {
    out.push('', s.header, ...s.lines.map((l) => `${IND}${l}`));
  }
  return { config: `${out.join('\n')}\n`, files, warnings, backends: renderedBackends, slots: slotTable };
}

/** Endpoints by address (numerically for IPv4), then port: a stable order for slot assignment. */
function compareEndpoint(a: string, b: string): number {
  const pa = splitEndpoint(a);
  const pb = splitEndpoint(b);
  const va = ipv4Number(pa.ip);
  const vb = ipv4Number(pb.ip);
  if (va !== undefined && vb !== undefined && va !== vb) return va - vb;
  if (pa.ip !== pb.ip) return pa.ip < pb.ip ? -1 : 1;
  return pa.port - pb.port;
}

function splitEndpoint(k: string): { ip: string; port: number } {
  const i = k.lastIndexOf(':');
  return { ip: k.slice(0, i), port: Number(k.slice(i + 1)) };
}

function ipv4Number(ip: string): number | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m) return undefined;
  return ((Number(m[1]) * 256 + Number(m[2])) * 256 + Number(m[3])) * 256 + Number(m[4]);
}

/**
 * The config with every server line reduced to its slot name and options (no address, no `disabled`, no
 * comment): two renders with the same skeleton differ only in endpoints, which the runtime API changes.
 */
export function configSkeleton(config: string): string {
  return config
    .split('\n')
    .map((l) => {
      const m = /^(\s+server\s+\S+)\s+\S+(.*?)(\s+disabled)?(\s+#.*)?$/.exec(l);
      return m ? `${m[1]}${m[2]}` : l;
    })
    .join('\n');
}
