// Turning a service into containers: deployment units (a primary and its sidekicks) per slot, placed on
// hosts, addressed, labelled the way the original labelled them. Runs inside the caller's transaction.
import type { Tx } from '../db/store.js';
import { newUuid, nowIso } from '../db/store.js';
import type { Container, Environment, Host, LaunchConfig, Service, Stack } from '../../model/resources.js';
import { constraintsFromLabels } from '../scheduling/constraints.js';
import {
  PlacementTally,
  eligibleHosts,
  placeUnit,
  withoutContainers,
  type PlacedContainer,
  type PlacementHost,
} from '../scheduling/place.js';
import { allocateIp, containerOwner, releaseIp, slotOwner, transferIp } from '../ipam/allocate.js';
import { ValidationError } from '../../common/errors.js';
import { LIMITS } from '../../model/limits.js';
import { ipToInt, parseSubnet } from '../ipam/cidr.js';
import { initialHealthState } from '../../model/liveness.js';

export const PRIMARY_LAUNCH_CONFIG = 'io.rancher.service.primary.launch.config';

/** Kinds of service that run containers. */
export function runsContainers(s: Service): boolean {
  return (s.kind === 'service' || s.kind === 'loadBalancerService') && s.launchConfig !== undefined;
}

export function launchConfigsOf(s: Service): LaunchConfig[] {
  return s.launchConfig ? [s.launchConfig, ...s.secondaryLaunchConfigs] : [];
}

export function containerName(stack: string, service: string, sidekick: string, index: number): string {
  return sidekick ? `${stack}-${service}-${sidekick}-${index}` : `${stack}-${service}-${index}`;
}

function placementHosts(hosts: Host[]): PlacementHost[] {
  return hosts.map((h) => ({ id: h.id, name: h.name, labels: h.labels, active: h.state === 'active' }));
}

function placedOf(c: Container): PlacedContainer | undefined {
  if (c.desiredState === 'removed' || !c.hostId) return undefined;
  return { hostId: c.hostId, name: c.name, labels: c.config.labels, serviceId: c.serviceId };
}

/**
 * The containers of an environment, indexed for reconciling: by id, by service, and as per-host
 * placement counts. Every lookup a reconcile makes is O(1) or O(that service's containers), so
 * creating or reconciling N containers is linear in N.
 */
export class EnvContainers {
  private readonly byId = new Map<string, Container>();
  private readonly byService = new Map<string, Map<string, Container>>();
  /** What each container contributed to `placement` (its host and labels when it was counted). */
  private readonly counted = new Map<string, PlacedContainer>();
  readonly placement = new PlacementTally();

  constructor(containers: Container[] = []) {
    for (const c of containers) this.add(c);
  }

  get size(): number {
    return this.byId.size;
  }

  add(c: Container): void {
    this.remove(c);
    this.byId.set(c.id, c);
    if (c.serviceId) {
      let m = this.byService.get(c.serviceId);
      if (!m) this.byService.set(c.serviceId, (m = new Map()));
      m.set(c.id, c);
    }
    const p = placedOf(c);
    if (p) {
      this.counted.set(c.id, p);
      this.placement.add(p);
    }
  }

  remove(c: Container): void {
    if (!this.byId.delete(c.id)) return;
    if (c.serviceId) this.byService.get(c.serviceId)?.delete(c.id);
    const p = this.counted.get(c.id);
    if (p) {
      this.counted.delete(c.id);
      this.placement.remove(p);
    }
  }

  /** Moves a (pending) container to a host, keeping the counts right. */
  setHost(c: Container, hostId: string): void {
    this.remove(c);
    c.hostId = hostId;
    this.add(c);
  }

  ofService(serviceId: string): Container[] {
    return [...(this.byService.get(serviceId)?.values() ?? [])];
  }
}

export interface DeployContext {
  env: Environment;
  /** The stack of the services being reconciled (reconcileAfterHostChange moves it along the stacks). */
  stack: Stack;
  hosts: Host[];
  placementHosts: PlacementHost[];
  /** All containers of the environment (kept current as units are added/removed). */
  containers: EnvContainers;
}

export function loadDeployContext(tx: Tx, env: Environment, stack: Stack): DeployContext {
  const hosts = tx.store.list('host', { env_id: env.id });
  return {
    env,
    stack,
    hosts,
    placementHosts: placementHosts(hosts),
    containers: new EnvContainers(tx.store.list('container', { env_id: env.id })),
  };
}

function desiredStateOf(s: Service): Container['desiredState'] {
  return s.state === 'inactive' ? 'stopped' : 'running';
}

interface Unit {
  index: number;
  hostId: string | null;
  deploymentUnitUuid: string | null;
  containers: Container[];
}

function unitsOf(ctx: DeployContext, s: Service, generation: Container['generation']): Map<number, Unit> {
  const units = new Map<number, Unit>();
  for (const c of ctx.containers.ofService(s.id)) {
    if (c.generation !== generation || c.serviceIndex === null) continue;
    let u = units.get(c.serviceIndex);
    if (!u) {
      units.set(c.serviceIndex, (u = { index: c.serviceIndex, hostId: c.hostId, deploymentUnitUuid: c.deploymentUnitUuid, containers: [] }));
    }
    u.containers.push(c);
  }
  return units;
}

function constraintsOf(ctx: DeployContext, s: Service) {
  const lcs = launchConfigsOf(s);
  const c = constraintsFromLabels(
    lcs.map((lc) => lc.labels),
    { stackName: ctx.stack.name, serviceName: s.name },
  );
  const requested = lcs.find((lc) => lc.requestedHostId)?.requestedHostId;
  if (requested) c.requestedHostId = requested;
  return c;
}

/**
 * Makes the service's current generation match its scale (or, for global services, its eligible hosts):
 * creates missing units, removes surplus ones, and aligns desired states. Throws SchedulingError when a
 * unit cannot be placed.
 */
export function reconcileService(tx: Tx, ctx: DeployContext, s: Service): void {
  if (!runsContainers(s)) return;
  const units = unitsOf(ctx, s, 'current');
  const constraints = constraintsOf(ctx, s);
  const desired = desiredStateOf(s);
  const createIndex = s.createIndex;
  const scale = s.scale;
  const perUnit = launchConfigsOf(s).length;

  if (s.global) {
    const own = new PlacementTally(ctx.containers.ofService(s.id).flatMap((c) => placedOf(c) ?? []));
    const { hosts } = eligibleHosts(ctx.placementHosts, withoutContainers(ctx.containers.placement, own), constraints);
    const wanted = new Set(hosts.map((h) => h.id));
    const have = new Map<string, Unit>();
    for (const u of units.values()) {
      if (u.hostId && wanted.has(u.hostId) && !have.has(u.hostId)) have.set(u.hostId, u);
      else removeUnit(tx, ctx, s, u, true);
    }
    checkContainerBudget(ctx, s, (hosts.length - have.size) * perUnit);
    let next = Math.max(0, ...units.keys()) + 1;
    for (const h of hosts) if (!have.has(h.id)) createUnit(tx, ctx, s, next++, h.id, null);
    s.scale = hosts.length;
  } else {
    for (const u of [...units.values()].sort((a, b) => b.index - a.index)) {
      if (u.index > s.scale) removeUnit(tx, ctx, s, u, true);
    }
    let missing = 0;
    for (let i = 1; i <= s.scale; i++) if (!units.has(i)) missing++;
    checkContainerBudget(ctx, s, missing * perUnit);
    // A unit no host can take (none active, or none that fits its constraints) waits unplaced
    // ('pending', with the reason as its containers' transitioning message), as Rancher's did, and is
    // placed when the hosts change (a host joins, is labelled, activated: environments.ts).
    const noHosts = !ctx.hosts.some((h) => h.state === 'active');
    for (let i = 1; i <= s.scale; i++) {
      const existing = units.get(i);
      if (existing && existing.hostId) continue;
      const placed = noHosts ? { ok: false as const, reason: 'no active host in the environment' } : placeUnit(ctx.placementHosts, ctx.containers.placement, constraints, s.id);
      if (!placed.ok) {
        const waiting = existing ? existing.containers : createUnit(tx, ctx, s, i, null, null);
        const message = `waiting for a host: ${placed.reason}`;
        for (const c of waiting) {
          if (c.transitioningMessage === message) continue;
          c.transitioningMessage = message;
          tx.put('container', c);
        }
        continue;
      }
      if (existing) {
        for (const c of existing.containers) {
          ctx.containers.setHost(c, placed.hostId);
          c.state = c.state === 'pending' ? 'creating' : c.state;
          delete c.transitioningMessage;
          tx.put('container', c);
        }
      } else createUnit(tx, ctx, s, i, placed.hostId, null);
    }
  }

  // A rolling restart's batch being stopped stays stopped until the restart starts it again.
  const held = s.restart?.phase === 'stop' ? new Set(s.restart.batch) : undefined;
  for (const c of ctx.containers.ofService(s.id)) {
    if (held && c.serviceIndex !== null && held.has(c.serviceIndex) && !c.config.startOnce) continue;
    if (c.generation === 'current' && c.desiredState !== desired) {
      c.desiredState = desired;
      tx.put('container', c);
    }
  }
  if (s.createIndex !== createIndex || s.scale !== scale) tx.put('service', s);
}

/** Refuses to grow an environment past LIMITS.maxContainersPerEnvironment. */
function checkContainerBudget(ctx: DeployContext, s: Service, adding: number): void {
  const max = LIMITS.maxContainersPerEnvironment;
  if (adding > 0 && ctx.containers.size + adding > max) {
    throw new ValidationError(
      'TooManyContainers',
      `service "${s.name}" needs ${adding} more containers; the environment has ${ctx.containers.size} and takes at most ${max} (DROVER_MAX_CONTAINERS)`,
      'scale',
    );
  }
}

/** Creates one unit (primary + sidekicks) at `index` on `hostId`, reusing the slot's addresses. */
export function createUnit(
  tx: Tx,
  ctx: DeployContext,
  s: Service,
  index: number,
  hostId: string | null,
  deploymentUnitUuid: string | null,
  /**
   * Addresses of their own (`ctr:` owners) instead of the slot's: a start_first upgrade's new unit runs
   * beside the old one, which keeps the slot's addresses until the upgrade is finished (finishUpgrade
   * hands them over).
   */
  ownAddresses = false,
): Container[] {
  const du = deploymentUnitUuid ?? newUuid();
  const subnet = parseSubnet(ctx.env.network.subnet);
  const prefixLen = subnet.prefix;
  const created: Container[] = [];
  const desired = desiredStateOf(s);
  for (const lc of launchConfigsOf(s)) {
    const lcName = lc.name ?? '';
    const id = tx.newId('container');
    const uuid = newUuid();
    const name = containerName(ctx.stack.name, s.name, lcName, index);
    let ip: string | null = null;
    if (lc.networkMode === 'managed') {
      ip = allocateIp(tx, {
        envId: ctx.env.id,
        subnet: ctx.env.network.subnet,
        owner: ownAddresses ? containerOwner(id) : slotOwner(s.id, lcName, index),
        ...(lc.requestedIpAddress !== undefined && !ownAddresses ? { requested: lc.requestedIpAddress } : {}),
      });
    }
    const labels: Record<string, string> = {
      ...lc.labels,
      'io.rancher.container.uuid': uuid,
      'io.rancher.container.name': name,
      'io.rancher.stack.name': ctx.stack.name,
      'io.rancher.stack_service.name': `${ctx.stack.name}/${s.name}`,
      'io.rancher.project.name': ctx.stack.name,
      'io.rancher.project_service.name': `${ctx.stack.name}/${s.name}`,
      'io.rancher.service.deployment.unit': du,
      'io.rancher.service.launch.config': lcName || PRIMARY_LAUNCH_CONFIG,
      'io.rancher.environment.uuid': ctx.env.uuid,
    };
    if (ip) labels['io.rancher.container.ip'] = `${ip}/${prefixLen}`;
    s.createIndex += 1;
    const c: Container = {
      id,
      uuid,
      environmentId: ctx.env.id,
      hostId,
      stackId: ctx.stack.id,
      serviceId: s.id,
      name,
      launchConfigName: lcName,
      serviceIndex: index,
      createIndex: s.createIndex,
      deploymentUnitUuid: du,
      primaryIpAddress: ip,
      state: hostId ? 'creating' : 'pending',
      desiredState: desired,
      generation: 'current',
      exitCode: null,
      externalId: null,
      healthState: initialHealthState(s.healthCheck !== undefined),
      startCount: 0,
      config: { ...lc, labels },
      adopted: false,
      created: nowIso(),
    };
    tx.put('container', c);
    ctx.containers.add(c);
    created.push(c);
  }
  // The caller saves the service (its createIndex moved): once per reconcile, not once per unit.
  return created;
}

function removeUnit(tx: Tx, ctx: DeployContext, s: Service, u: Unit, releaseAddresses: boolean): void {
  for (const c of u.containers) removeContainerRecord(tx, ctx, c);
  if (releaseAddresses) {
    for (const lc of launchConfigsOf(s)) releaseIp(tx, ctx.env.id, slotOwner(s.id, lc.name ?? '', u.index));
  }
}

/**
 * Removes a container's record and its links. An address of its own (a standalone or adopted container's
 * `ctr:` allocation) is released with it; a scheduled container's address belongs to its service slot.
 */
export function removeContainerRecord(tx: Tx, ctx: DeployContext | null, c: Container): void {
  releaseIp(tx, c.environmentId, containerOwner(c.id));
  for (const l of tx.store.list('containerLink', { container_id: c.id })) tx.remove('containerLink', l.id);
  const targeting = tx.store
    .statement('containerLinksTo', () => "SELECT id FROM container_links WHERE env_id = ? AND json_extract(data, '$.targetContainerId') = ?")
    .all(c.environmentId, c.id) as { id: string }[];
  for (const l of targeting) tx.remove('containerLink', l.id);
  tx.remove('container', c.id);
  ctx?.containers.remove(c);
}

/**
 * Health strategy `recreate`: replaces the unit in slot `index` (the primary and its sidekicks) with new
 * containers — new ids, uuids and docker names — in the same slot: the same index and record names, the
 * same host when it is still active, and the same addresses (they belong to the slot, not the
 * container). Returns the new containers (none when the slot has no current unit).
 */
export function recreateUnit(tx: Tx, ctx: DeployContext, s: Service, index: number): Container[] {
  const u = unitsOf(ctx, s, 'current').get(index);
  if (!u) return [];
  // A start_first upgrade's new unit has addresses of its own while the old one holds the slot's: so
  // does its replacement.
  const own = u.containers.some((c) => ownsAddress(tx, c));
  removeUnit(tx, ctx, s, u, false);
  const hostId = u.hostId && ctx.hosts.some((h) => h.id === u.hostId && h.state === 'active') ? u.hostId : null;
  const created = createUnit(tx, ctx, s, index, hostId, u.deploymentUnitUuid, own);
  tx.put('service', s);
  // Its host is gone: the unit waits unplaced and reconcile places it like any other.
  if (!hostId) reconcileService(tx, ctx, s);
  return created;
}

/**
 * Upgrade: the current containers of the given slots become the 'previous' generation (stopped, kept for
 * a rollback); new ones take their slots (same host and addresses). Unplaced ones are made by reconcile.
 */
function upgradeSlots(tx: Tx, ctx: DeployContext, s: Service, slots: number[]): void {
  const current = unitsOf(ctx, s, 'current');
  const units = slots.flatMap((i) => current.get(i) ?? []);
  // start_first: the old unit keeps running (and its addresses) until the new one serves (UpgradeDriver).
  const startFirst = s.upgrade?.strategy.startFirst === true;
  for (const u of units) {
    for (const c of u.containers) {
      c.generation = 'previous';
      if (!startFirst) c.desiredState = 'stopped';
      tx.put('container', c);
    }
  }
  if (startFirst && s.upgrade) s.upgrade = { ...s.upgrade, overlap: [...new Set([...(s.upgrade.overlap ?? []), ...units.map((u) => u.index)])] };
  for (const u of units) if (u.hostId) createUnit(tx, ctx, s, u.index, u.hostId, u.deploymentUnitUuid, startFirst);
  tx.put('service', s);
  reconcileService(tx, ctx, s);
}

/**
 * Starts an upgrade (the service's `upgrade` is set): every slot at once, or with a `batchSize` the first
 * batch, the service staying `upgrading` until `advanceUpgrade` has replaced the rest.
 */
export function upgradeService(tx: Tx, ctx: DeployContext, s: Service): void {
  const slots = [...unitsOf(ctx, s, 'current').keys()].sort((a, b) => a - b);
  const size = s.upgrade?.strategy.batchSize;
  if (!s.upgrade || size === undefined || size >= slots.length) {
    if (s.upgrade) s.upgrade = { ...s.upgrade, batch: slots, remaining: [] };
    upgradeSlots(tx, ctx, s, slots);
    return;
  }
  s.upgrade = { ...s.upgrade, batch: slots.slice(0, size), remaining: slots.slice(size) };
  s.state = 'upgrading';
  upgradeSlots(tx, ctx, s, s.upgrade.batch);
}

/** The next batch of a batched upgrade; the service is `upgraded` once no slot remains. */
export function advanceUpgrade(tx: Tx, ctx: DeployContext, s: Service): void {
  if (!s.upgrade || s.upgrade.remaining.length === 0) return;
  const size = s.upgrade.strategy.batchSize ?? s.upgrade.remaining.length;
  const batch = s.upgrade.remaining.slice(0, size);
  s.upgrade = { ...s.upgrade, batch, remaining: s.upgrade.remaining.slice(size) };
  if (s.upgrade.remaining.length === 0) s.state = 'upgraded';
  upgradeSlots(tx, ctx, s, batch);
}


/**
 * A rolling restart's next step for `s` (in `tx`), given which containers of the batch in progress have
 * stopped and which serve: the batch's containers are stopped, then started, then (after the interval,
 * which the caller times) the next batch. start_once containers are left alone. Returns true when it moved.
 */
export function stepRestart(tx: Tx, ctx: DeployContext, s: Service, done: (c: Container) => { stopped: boolean; serving: boolean }): boolean {
  const r = s.restart;
  if (!r) return false;
  const units = unitsOf(ctx, s, 'current');
  const inBatch = r.batch.flatMap((i) => units.get(i)?.containers ?? []).filter((c) => !c.config.startOnce);
  const setDesired = (cs: Container[], want: 'running' | 'stopped') => {
    for (const c of cs) {
      if (c.desiredState === want) continue;
      c.desiredState = want;
      tx.put('container', c);
    }
  };
  if (r.phase === 'stop') {
    if (!inBatch.every((c) => done(c).stopped)) return false;
    setDesired(inBatch, 'running');
    s.restart = { ...r, phase: 'start' };
  } else {
    if (!inBatch.every((c) => done(c).serving)) return false;
    if (r.remaining.length === 0) {
      delete s.restart;
    } else {
      const batch = r.remaining.slice(0, r.batchSize);
      s.restart = { ...r, batch, remaining: r.remaining.slice(r.batchSize), phase: 'stop' };
      setDesired(batch.flatMap((i) => units.get(i)?.containers ?? []).filter((c) => !c.config.startOnce), 'stopped');
    }
  }
  tx.put('service', s);
  return true;
}

/** Starts a rolling restart of `s`: its first batch is stopped now (stepRestart does the rest). */
export function beginRestart(tx: Tx, ctx: DeployContext, s: Service, batchSize: number, intervalMillis: number): void {
  const slots = [...unitsOf(ctx, s, 'current').keys()].sort((a, b) => a - b);
  const batch = slots.slice(0, batchSize);
  s.restart = { batchSize, intervalMillis, batch, remaining: slots.slice(batchSize), phase: 'stop' };
  const units = unitsOf(ctx, s, 'current');
  for (const c of batch.flatMap((i) => units.get(i)?.containers ?? [])) {
    if (c.config.startOnce || c.desiredState === 'stopped') continue;
    c.desiredState = 'stopped';
    tx.put('container', c);
  }
  tx.put('service', s);
}

/** Whether the container holds an address of its own (`ctr:`), not its slot's. */
function ownsAddress(tx: Tx, c: Container): boolean {
  return tx.store.statement('ipam:owns', () => 'SELECT 1 FROM ip_allocations WHERE env_id = ? AND owner = ?').get(c.environmentId, containerOwner(c.id)) !== undefined;
}

/** start_first: the new units of `slots` serve, so their old units stop now (drained by their agents). */
export function endOverlap(tx: Tx, ctx: DeployContext, s: Service, slots: number[]): void {
  const prev = unitsOf(ctx, s, 'previous');
  for (const i of slots) {
    for (const c of prev.get(i)?.containers ?? []) {
      if (c.desiredState === 'stopped') continue;
      c.desiredState = 'stopped';
      tx.put('container', c);
    }
  }
  if (s.upgrade) s.upgrade = { ...s.upgrade, overlap: (s.upgrade.overlap ?? []).filter((i) => !slots.includes(i)) };
  tx.put('service', s);
}

export function finishUpgrade(tx: Tx, ctx: DeployContext, s: Service): void {
  const previous = unitsOf(ctx, s, 'previous');
  for (const u of previous.values()) removeUnit(tx, ctx, s, u, false);
  // A start_first upgrade's new containers had addresses of their own: the slots' go, theirs become the slots'.
  for (const u of unitsOf(ctx, s, 'current').values()) {
    for (const c of u.containers) {
      const owner = slotOwner(s.id, c.launchConfigName, u.index);
      if (!ownsAddress(tx, c)) continue;
      releaseIp(tx, s.environmentId, owner);
      transferIp(tx, s.environmentId, containerOwner(c.id), owner);
    }
  }
}

export function rollbackService(tx: Tx, ctx: DeployContext, s: Service): void {
  const prev = unitsOf(ctx, s, 'previous');
  // Only the replaced slots go back; slots a batched upgrade had not reached yet still run the old config.
  for (const u of unitsOf(ctx, s, 'current').values()) if (prev.has(u.index)) removeUnit(tx, ctx, s, u, false);
  for (const u of prev.values()) {
    for (const c of u.containers) {
      c.generation = 'current';
      c.desiredState = desiredStateOf(s);
      tx.put('container', c);
    }
  }
}

/** Sorting helper for addresses (API listings, tests). */
export function compareIps(a: string, b: string): number {
  return ipToInt(a) - ipToInt(b);
}
