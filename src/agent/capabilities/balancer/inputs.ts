// What the balancers of this host are, read from the environment state (pure): one instance per container
// of a `loadBalancerService` scheduled here, with its port rules resolved to target endpoints, its
// certificates and its custom config — everything renderHaproxy (render.ts) takes except what the applier
// owns (`statsSocket`, `previousSlots`). See ../../../../../shared/spec/loadbalancer.md.
//
// Targets follow the rules DNS and metadata use (model/serving.ts): a container is a target when it owns
// its managed address (one source address is one container for everyone) and is a serving endpoint
// (running and, when its service has a health check, healthy). External services add their IPs; alias
// (dns) services expand to their linked services' targets.
//
// The 1.0/1.1 label form (`io.rancher.loadbalancer.target.<svc>` on the balancer, targets given by its
// links, source → default target port by its `ports`) is converted to port rules here: the control plane
// stores such a balancer as written (launchConfig labels + service links, lbConfig absent).
//
// Problems never make it throw: a rule that cannot be resolved (its service gone, an external service by
// hostname) is left out with a warning naming it, and the rest is served.
import type { EnvState } from '../../../model/state.js';
import type { Certificate, Container, HealthCheck, LbConfig, PortRule, Service } from '../../../model/resources.js';
import { canOwnAddress, isBalancerInstance, isGoneState, isListed, isServingEndpoint, ownsBefore } from '../../../model/serving.js';
import type { BalancerCertificate, BalancerHealthCheck, BalancerInput, BalancerProtocol, BalancerRule, BalancerTarget, TargetPolicy } from './render.js';

export const TARGET_POLICY_LABEL = 'io.rancher.lb_service.target';
export const LEGACY_TARGET_LABEL_PREFIX = 'io.rancher.loadbalancer.target.';
export const LEGACY_SSL_PORTS_LABEL = 'io.rancher.loadbalancer.ssl.ports';
export const PROXY_PROTOCOL_PORTS_LABEL = 'io.rancher.loadbalancer.proxy-protocol.ports';

/** The renderer's input less what the applier owns. */
export type BalancerInstanceInput = Omit<BalancerInput, 'statsSocket' | 'previousSlots'>;

export interface BalancerInstance {
  containerId: string;
  serviceId: string;
  /** The balancer container's name. */
  name: string;
  /** Its managed address (null until the control plane gave it one). */
  ip: string | null;
  input: BalancerInstanceInput;
  /** Rules or certificates left out while resolving (the renderer adds its own). */
  warnings: string[];
}

export interface BalancerInputsOptions {
  /**
   * A default certificate for a balancer with an https/tls rule and no certificate at all (the caller
   * generates it once per balancer service and caches it: this module stays pure). Absent: such rules are
   * left out by the renderer with a warning.
   */
  selfSigned?: (serviceId: string, name: string) => BalancerCertificate;
}

type Owned = Container & { primaryIpAddress: string };

/** The 1.0/1.1 label spec `[[domain][:sourcePort][/path]=][targetPort]` as its parts; undefined when malformed. */
export function parseLegacyTargetSpec(spec: string): { hostname?: string; sourcePort?: number; path?: string; targetPort?: number } | undefined {
  const s = spec.trim();
  if (!s) return undefined;
  const eq = s.lastIndexOf('=');
  let left = eq >= 0 ? s.slice(0, eq) : s;
  const right = eq >= 0 ? s.slice(eq + 1).trim() : '';
  const out: { hostname?: string; sourcePort?: number; path?: string; targetPort?: number } = {};
  if (eq >= 0) {
    if (right) {
      if (!/^\d+$/.test(right)) return undefined;
      out.targetPort = Number(right);
    }
  } else if (/^\d+$/.test(s)) {
    // `81`: the target port for every source port.
    return { targetPort: Number(s) };
  }
  left = left.trim();
  const slash = left.indexOf('/');
  if (slash >= 0) {
    out.path = left.slice(slash);
    left = left.slice(0, slash);
  }
  const colon = left.lastIndexOf(':');
  let host = left;
  if (colon >= 0) {
    const p = left.slice(colon + 1);
    if (!/^\d+$/.test(p)) return undefined;
    out.sourcePort = Number(p);
    host = left.slice(0, colon);
  } else if (/^\d+$/.test(left)) {
    // `80/path`: a bare number before the path is the source port.
    out.sourcePort = Number(left);
    host = '';
  }
  if (host) out.hostname = host;
  for (const p of [out.sourcePort, out.targetPort]) if (p !== undefined && (p < 1 || p > 65535)) return undefined;
  return out;
}

function portList(v: string | undefined): Set<number> {
  const out = new Set<number>();
  for (const w of (v ?? '').split(',')) {
    const n = Number(w.trim());
    if (w.trim() && Number.isInteger(n) && n >= 1 && n <= 65535) out.add(n);
  }
  return out;
}

/**
 * The label form as port rules: the balancer's published ports are the source ports (private port = the
 * default target port), http unless listed in `io.rancher.loadbalancer.ssl.ports` (https); every linked
 * service is a target of every source port unless its `io.rancher.loadbalancer.target.<link>` label gives
 * its specs (comma separated), which then replace its defaults.
 */
export function legacyPortRules(state: EnvState, lb: Service, warnings: string[]): PortRule[] {
  const labels = lb.launchConfig?.labels ?? {};
  const ssl = portList(labels[LEGACY_SSL_PORTS_LABEL]);
  const sources: { sourcePort: number; targetPort: number }[] = [];
  const seenPorts = new Set<number>();
  for (const p of lb.launchConfig?.ports ?? []) {
    if (p.protocol !== 'tcp') continue;
    const src = p.publicPort ?? p.privatePort;
    if (seenPorts.has(src)) continue;
    seenPorts.add(src);
    sources.push({ sourcePort: src, targetPort: p.privatePort });
  }
  const proto = (port: number): PortRule['protocol'] => (ssl.has(port) ? 'https' : 'http');
  const rules: PortRule[] = [];
  const links = [...state.serviceLinks.values()].filter((l) => l.serviceId === lb.id).sort((a, b) => (a.id < b.id ? -1 : 1));
  for (const link of links) {
    const target = state.services.get(link.consumedServiceId);
    const names = [link.name, target?.name].filter((n): n is string => !!n);
    const labelKey = names.map((n) => `${LEGACY_TARGET_LABEL_PREFIX}${n}`).find((k) => labels[k] !== undefined);
    const specs = labelKey ? (labels[labelKey] ?? '').split(',').map((s) => s.trim()).filter(Boolean) : [];
    if (specs.length === 0) {
      for (const s of sources) rules.push({ sourcePort: s.sourcePort, protocol: proto(s.sourcePort), serviceId: link.consumedServiceId, targetPort: s.targetPort });
      continue;
    }
    for (const spec of specs) {
      const p = parseLegacyTargetSpec(spec);
      if (!p) {
        warnings.push(`label ${labelKey}: ${JSON.stringify(spec)} is not [[domain][:sourcePort][/path]=][targetPort]; left out`);
        continue;
      }
      const ports = p.sourcePort !== undefined ? sources.filter((s) => s.sourcePort === p.sourcePort) : sources;
      if (p.sourcePort !== undefined && ports.length === 0) {
        // A source port the balancer does not publish: still served (it listens on the managed address).
        ports.push({ sourcePort: p.sourcePort, targetPort: p.sourcePort });
      }
      if (ports.length === 0) warnings.push(`label ${labelKey}: ${JSON.stringify(spec)} has no source port and the balancer publishes none; left out`);
      for (const s of ports) {
        rules.push({
          sourcePort: s.sourcePort,
          protocol: proto(s.sourcePort),
          serviceId: link.consumedServiceId,
          targetPort: p.targetPort ?? s.targetPort,
          ...(p.hostname ? { hostname: p.hostname } : {}),
          ...(p.path ? { path: p.path } : {}),
        });
      }
    }
  }
  return rules;
}

function healthCheckOf(hc: HealthCheck | undefined): BalancerHealthCheck | undefined {
  if (!hc) return undefined;
  return {
    port: hc.port,
    interval: hc.interval,
    responseTimeout: hc.responseTimeout,
    healthyThreshold: hc.healthyThreshold,
    unhealthyThreshold: hc.unhealthyThreshold,
    ...(hc.requestLine ? { requestLine: hc.requestLine } : {}),
  };
}

function targetPolicyOf(v: string | undefined): TargetPolicy {
  return v === 'only-local' || v === 'prefer-local' ? v : 'any';
}

function ruleName(r: PortRule, i: number): string {
  return `port rule ${i} (${r.protocol} ${r.sourcePort}${r.hostname ?? ''}${r.path ?? ''}${r.service ? ` → ${r.service}` : ''})`;
}

/** The service a rule names: its resolved id, else its `<stack>/<service>` or `<service>` in the balancer's stack. */
function ruleService(state: EnvState, lb: Service, r: PortRule): Service | undefined {
  if (r.serviceId) return state.services.get(r.serviceId);
  if (!r.service) return undefined;
  const [stackName, svcName] = r.service.includes('/') ? r.service.split('/', 2) : [undefined, r.service];
  const stackId = stackName === undefined ? lb.stackId : [...state.stacks.values()].find((s) => s.name === stackName && !isGoneState(s.state))?.id;
  if (stackId === undefined) return undefined;
  return [...state.services.values()].find((s) => s.stackId === stackId && s.name === svcName && !isGoneState(s.state));
}

class Resolver {
  private readonly owners = new Map<string, Owned>();
  private readonly byService = new Map<string, Owned[]>();

  constructor(
    private readonly state: EnvState,
    private readonly hostId: string,
  ) {
    for (const c of state.containers.values()) {
      if (!canOwnAddress(c)) continue;
      const cur = this.owners.get(c.primaryIpAddress);
      if (cur === undefined || ownsBefore(c, cur)) this.owners.set(c.primaryIpAddress, c);
    }
    for (const c of this.owners.values()) {
      if (c.serviceId === null) continue;
      let l = this.byService.get(c.serviceId);
      if (!l) this.byService.set(c.serviceId, (l = []));
      l.push(c);
    }
  }

  /** The endpoints of `svc` (its primary containers; externals' IPs; aliases expanded), with a warning when it cannot be served. */
  targets(svc: Service, port: number | undefined, warn: (m: string) => void, seen: Set<string> = new Set()): BalancerTarget[] {
    if (seen.has(svc.id)) return [];
    seen.add(svc.id);
    if (isGoneState(svc.state)) {
      warn(`service ${svc.name} is ${svc.state}`);
      return [];
    }
    // A deactivated service serves nothing; no warning: that is what the user asked for.
    if (svc.state === 'inactive') return [];
    const withPort = (t: BalancerTarget): BalancerTarget => (port !== undefined ? { ...t, port } : t);
    if (svc.kind === 'externalService') {
      const out = svc.externalIpAddresses.map((ip) => withPort({ name: `${svc.name}/${ip}`, ip, local: false, healthy: true }));
      if (out.length === 0) {
        warn(
          svc.hostname
            ? `external service ${svc.name} is given by hostname (${svc.hostname}), which the balancer cannot resolve yet`
            : `external service ${svc.name} has no external IP addresses`,
        );
      }
      return out;
    }
    if (svc.kind === 'dnsService') {
      const out: BalancerTarget[] = [];
      const links = [...this.state.serviceLinks.values()].filter((l) => l.serviceId === svc.id).sort((a, b) => (a.id < b.id ? -1 : 1));
      for (const l of links) {
        const t = this.state.services.get(l.consumedServiceId);
        if (!t) {
          warn(`alias ${svc.name} links to service ${l.consumedServiceId}, which is gone`);
          continue;
        }
        out.push(...this.targets(t, port, warn, seen));
      }
      return out;
    }
    const out: BalancerTarget[] = [];
    for (const c of this.byService.get(svc.id) ?? []) {
      // The primary containers only: sidekicks are services of their own for DNS and metadata.
      if (c.launchConfigName !== '' || !isServingEndpoint(c, svc)) continue;
      out.push(withPort({ name: c.name, ip: c.primaryIpAddress, local: c.hostId === this.hostId, healthy: true }));
    }
    out.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
    return out;
  }
}

function balancerCertificate(c: Certificate, used: Set<string>): BalancerCertificate {
  let name = c.name || c.id;
  if (used.has(name)) name = `${name}-${c.id}`;
  used.add(name);
  return { name, cert: c.cert, key: c.key ?? '', ...(c.certChain ? { chain: c.certChain } : {}) };
}

function instanceInput(state: EnvState, lb: Service, resolver: Resolver, o: BalancerInputsOptions, warnings: string[]): BalancerInstanceInput {
  const labels = lb.launchConfig?.labels ?? {};
  const lbc: LbConfig | undefined = lb.lbConfig;
  const portRules = lbc && lbc.portRules.length > 0 ? lbc.portRules : legacyPortRules(state, lb, warnings);
  const rules: BalancerRule[] = [];
  portRules.forEach((r, i) => {
    const label = ruleName(r, i);
    const svc = ruleService(state, lb, r);
    if (!svc) {
      warnings.push(`${label}: ${r.serviceId || r.service ? `its service ${r.service ?? r.serviceId} is gone` : r.selector ? 'selector rules are not supported yet' : 'it names no service'}; left out`);
      return;
    }
    const targets = resolver.targets(svc, r.targetPort, (m) => warnings.push(`${label}: ${m}`));
    rules.push({
      sourcePort: r.sourcePort,
      protocol: r.protocol as BalancerProtocol,
      ...(r.hostname ? { hostname: r.hostname } : {}),
      ...(r.path ? { path: r.path } : {}),
      ...(r.priority !== undefined ? { priority: r.priority } : {}),
      ...(r.backendName ? { backendName: r.backendName } : {}),
      ...(r.targetPort !== undefined ? { targetPort: r.targetPort } : {}),
      targets,
      ...(svc.kind === 'service' || svc.kind === 'loadBalancerService' ? withHc(healthCheckOf(svc.healthCheck)) : {}),
    });
  });

  const used = new Set<string>();
  const certOf = (id: string, what: string): BalancerCertificate | undefined => {
    const c = state.certificates.get(id);
    if (!c) {
      warnings.push(`${what} ${id} is gone; left out`);
      return undefined;
    }
    if (!c.key) {
      warnings.push(`${what} ${c.name} has no private key on this host; left out`);
      return undefined;
    }
    return balancerCertificate(c, used);
  };
  const defaultCertificate = lbc?.defaultCertificateId ? certOf(lbc.defaultCertificateId, 'default certificate') : undefined;
  const certificates = (lbc?.certificateIds ?? []).filter((id) => id !== lbc?.defaultCertificateId).flatMap((id) => certOf(id, 'certificate') ?? []);
  const needsTls = rules.some((r) => r.protocol === 'https' || r.protocol === 'tls');
  let dflt = defaultCertificate;
  if (needsTls && !dflt && certificates.length === 0 && o.selfSigned) dflt = o.selfSigned(lb.id, lb.name);

  const proxyPorts = portList(labels[PROXY_PROTOCOL_PORTS_LABEL]);
  return {
    name: lb.name,
    rules,
    ...(certificates.length ? { certificates } : {}),
    ...(dflt ? { defaultCertificate: dflt } : {}),
    ...(lbc?.config?.trim() ? { customConfig: lbc.config } : {}),
    ...(lbc?.stickinessPolicy ? { stickiness: lbc.stickinessPolicy } : {}),
    targetPolicy: targetPolicyOf(labels[TARGET_POLICY_LABEL]),
    ...(proxyPorts.size ? { proxyProtocolPorts: [...proxyPorts].sort((a, b) => a - b) } : {}),
  };
}

function withHc(hc: BalancerHealthCheck | undefined): { healthCheck?: BalancerHealthCheck } {
  return hc ? { healthCheck: hc } : {};
}

/**
 * This host's balancer instances: one per listed container of a live `loadBalancerService` that is
 * scheduled here and meant to run. `bindAddresses` is `*` (source ports are published on the host's
 * addresses) plus the instance's managed address.
 */
export function balancerInputs(state: EnvState, hostId: string, o: BalancerInputsOptions = {}): BalancerInstance[] {
  let resolver: Resolver | undefined;
  const out: BalancerInstance[] = [];
  for (const c of state.containers.values()) {
    if (c.hostId !== hostId || c.serviceId === null || !isListed(c) || c.desiredState !== 'running') continue;
    const lb = state.services.get(c.serviceId);
    if (!lb || !isBalancerInstance(c, lb) || isGoneState(lb.state)) continue;
    resolver ??= new Resolver(state, hostId);
    const warnings: string[] = [];
    const input = instanceInput(state, lb, resolver, o, warnings);
    const ip = c.primaryIpAddress || null;
    input.bindAddresses = ip ? ['*', ip] : ['*'];
    out.push({ containerId: c.id, serviceId: lb.id, name: c.name, ip, input, warnings });
  }
  out.sort((a, b) => (a.containerId < b.containerId ? -1 : a.containerId > b.containerId ? 1 : 0));
  return out;
}
