// Liveness and address ownership: the rules DNS, metadata, the runtime and the control plane share, in one
// place, so that one source address is one container to all of them and "serving" means one thing.
//
// - listed: a container that exists for everyone (not being removed, not an upgrade's rollback copy);
// - serving endpoint: listed, and serving by liveness.ts (running and, when its service has a health
//   check, healthy). DNS answers a service
//   with ALL its serving containers (none when none is serving: never "the newest one anyway");
// - owner of an address: among the listed managed containers with that primary IP, a running one, then the
//   newest (`created`), then the highest id. Order-free: the same set gives the same owner however built.
import { isRunning as runs, isServing } from './liveness.js';
import type { Container, Service } from './resources.js';

const GONE_STATES: ReadonlySet<string> = new Set(['removed', 'removing', 'purged', 'purging']);

/** Whether a container exists for DNS and metadata: not being removed and not kept back for a rollback. */
export function isListed(c: Container): boolean {
  return c.desiredState !== 'removed' && c.generation !== 'previous' && !GONE_STATES.has(c.state);
}

/** Whether a record (host, stack, service) is gone from the environment's point of view. */
export function isGoneState(state: string): boolean {
  return GONE_STATES.has(state);
}

/** Listed and running (liveness.ts's isRunning for a container document). */
export function isRunningListed(c: Container): boolean {
  return isListed(c) && runs(c);
}

/**
 * An endpoint DNS and metadata (and later the balancer) include: listed, and serving by the liveness rule
 * of liveness.ts (running and, when the service has a health check, healthy). `service` is the
 * container's service (undefined for a standalone container or an unknown service: no check applies).
 */
export function isServingEndpoint(c: Container, service: Service | undefined): boolean {
  return isListed(c) && isServing(c, service?.healthCheck !== undefined);
}

/** Whether a container can own its primary address (a managed, listed container with one). */
export function canOwnAddress(c: Container): c is Container & { primaryIpAddress: string } {
  return c.primaryIpAddress !== null && c.primaryIpAddress !== '' && c.config.networkMode === 'managed' && isListed(c);
}

/** True when `a` wins the address over `b` (running first, then newest `created`, then highest id). */
export function ownsBefore(a: Container, b: Container): boolean {
  const ra = runs(a);
  if (ra !== runs(b)) return ra;
  if (a.created !== b.created) return a.created > b.created;
  return a.id > b.id;
}

/** The owner of every address among `containers` (a full pass; see AddressOwners for the incremental form). */
export function addressOwners(containers: Iterable<Container>): Map<string, Container> {
  const out = new Map<string, Container>();
  for (const c of containers) {
    if (!canOwnAddress(c)) continue;
    const cur = out.get(c.primaryIpAddress);
    if (cur === undefined || ownsBefore(c, cur)) out.set(c.primaryIpAddress, c);
  }
  return out;
}

/**
 * Address owners kept up to date container by container: the candidates of every address, so that
 * removing the owner hands the address to the next one without a pass over the environment.
 */
export class AddressOwners {
  private readonly candidates = new Map<string, Map<string, Container>>();
  /** The address each container is a candidate for (its previous form may be gone from the state). */
  private readonly addressOf = new Map<string, string>();

  constructor(containers: Iterable<Container> = []) {
    for (const c of containers) this.update(c.id, c);
  }

  /** Records a container's current form (undefined: removed). Returns the addresses whose owner may have changed. */
  update(id: string, c: Container | undefined): string[] {
    const touched: string[] = [];
    const old = this.addressOf.get(id);
    if (old !== undefined) {
      const m = this.candidates.get(old);
      m?.delete(id);
      if (m?.size === 0) this.candidates.delete(old);
      this.addressOf.delete(id);
      touched.push(old);
    }
    if (c !== undefined && canOwnAddress(c)) {
      const ip = c.primaryIpAddress;
      let m = this.candidates.get(ip);
      if (!m) this.candidates.set(ip, (m = new Map()));
      m.set(id, c);
      this.addressOf.set(id, ip);
      if (ip !== old) touched.push(ip);
    }
    return touched;
  }

  owner(ip: string): Container | undefined {
    const m = this.candidates.get(ip);
    if (!m) return undefined;
    let best: Container | undefined;
    for (const c of m.values()) if (best === undefined || ownsBefore(c, best)) best = c;
    return best;
  }

  /** Whether `c` (its current form) owns its address. */
  owns(c: Container): boolean {
    return canOwnAddress(c) && this.owner(c.primaryIpAddress)?.id === c.id;
  }

  addresses(): IterableIterator<string> {
    return this.candidates.keys();
  }
}

/**
 * Whether a container is a balancer instance: the primary launch config of a `loadBalancerService`. The
 * agent runs it as an HAProxy on its host (src/agent/capabilities/balancer), never as a Docker container,
 * whatever image its compose file names (`rancher/lb-service-haproxy` means "a drover balancer").
 */
export function isBalancerInstance(c: Container, service: Service | undefined): boolean {
  return c.launchConfigName === '' && service !== undefined && service.kind === 'loadBalancerService';
}
