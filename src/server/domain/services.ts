// Services: create (from a compose import or the API), scale, activate/deactivate, upgrade,
// finish-upgrade, rollback, remove; and service links.
import type { Store, Tx } from '../db/store.js';
import { newUuid, nowIso } from '../db/store.js';
import {
  LaunchConfig,
  UpgradeStrategy,
  type LaunchConfigInput,
  type LbConfig,
  type Service,
  type Container,
  type ServiceLink,
  type Stack,
} from '../../model/resources.js';
import { ConflictError, NotFoundError, ValidationError } from '../../common/errors.js';
import type { ServiceSpec } from '../compose/spec.js';
import {
  advanceUpgrade,
  beginRestart,
  endOverlap,
  stepRestart,
  finishUpgrade,
  loadDeployContext,
  reconcileService,
  recreateUnit,
  removeContainerRecord,
  rollbackService,
  runsContainers,
  upgradeService,
} from './deploy.js';
import { releaseOwnersWithPrefix } from '../ipam/allocate.js';
import { isGlobal } from '../scheduling/constraints.js';
import { API_LB_FIELDS, resolveLbConfig } from './lb-config.js';
import { getStatus, isChecked, type HealthTransition } from './status.js';
import { isServing } from '../../model/liveness.js';

export const SERVICE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$/;

/** Creates a service record from a spec; containers are created by `deployServices`. */
export function insertService(tx: Tx, stack: Stack, spec: ServiceSpec): Service {
  if (!SERVICE_NAME.test(spec.name)) {
    throw new ValidationError('InvalidName', `service name "${spec.name}" must be letters, digits and '-' (max 63)`, 'name');
  }
  if (tx.store.list('service', { stack_id: stack.id, name: spec.name }).length) {
    throw new ConflictError('NotUnique', `stack "${stack.name}" already has a service "${spec.name}"`, 'name');
  }
  const s: Service = {
    id: tx.newId('service'),
    uuid: newUuid(),
    environmentId: stack.environmentId,
    stackId: stack.id,
    name: spec.name,
    kind: spec.kind,
    state: spec.startOnCreate === false ? 'inactive' : 'active',
    scale: spec.scale,
    global: spec.global,
    ...(spec.launchConfig ? { launchConfig: spec.launchConfig } : {}),
    secondaryLaunchConfigs: spec.secondaryLaunchConfigs,
    metadata: spec.metadata,
    ...(spec.healthCheck ? { healthCheck: spec.healthCheck } : {}),
    ...(spec.lbConfig ? { lbConfig: spec.lbConfig } : {}),
    ...(spec.upgradeStrategy ? { upgradeStrategy: spec.upgradeStrategy } : {}),
    ...(spec.drainTimeoutMs !== undefined ? { drainTimeoutMs: spec.drainTimeoutMs } : {}),
    externalIpAddresses: spec.externalIpAddresses,
    ...(spec.hostname ? { hostname: spec.hostname } : {}),
    fqdn: `${spec.name}.${stack.name}.rancher.internal`.toLowerCase(),
    createIndex: 0,
    system: false,
    created: nowIso(),
  };
  return tx.put('service', s);
}

export function insertServiceLink(tx: Tx, from: Service, to: Service, alias: string | undefined): ServiceLink {
  const existing = tx.store.list('serviceLink', { service_id: from.id, consumed_service_id: to.id })[0];
  const link: ServiceLink = {
    id: existing?.id ?? tx.newId('serviceLink'),
    environmentId: from.environmentId,
    serviceId: from.id,
    consumedServiceId: to.id,
    name: alias ?? '',
    ports: [],
    created: existing?.created ?? nowIso(),
  };
  return tx.put('serviceLink', link);
}

/** Creates the containers of freshly inserted services (scheduling errors abort the transaction). */
export function deployServices(tx: Tx, stack: Stack, services: Service[]): void {
  const env = tx.store.mustGet('environment', stack.environmentId);
  const ctx = loadDeployContext(tx, env, stack);
  for (const s of services) reconcileService(tx, ctx, s);
}

function withService<T>(store: Store, id: string, fn: (tx: Tx, s: Service, stack: Stack) => T): T {
  return store.tx((tx) => {
    const s = store.mustGet('service', id);
    const stack = store.mustGet('stack', s.stackId);
    return fn(tx, s, stack);
  });
}

function reconcile(tx: Tx, s: Service, stack: Stack): void {
  const env = tx.store.mustGet('environment', s.environmentId);
  reconcileService(tx, loadDeployContext(tx, env, stack), s);
}

export function scaleService(store: Store, id: string, scale: number): Service {
  return withService(store, id, (tx, s, stack) => scaleIn(tx, s, stack, scale));
}

/** Sets the scale of `s` inside `tx` and creates or removes its containers. */
export function scaleIn(tx: Tx, s: Service, stack: Stack, scale: number): Service {
  if (!Number.isInteger(scale) || scale < 0) throw new ValidationError('InvalidScale', 'scale must be an integer ≥ 0', 'scale');
  if (s.upgrade) throw new ConflictError('UpgradeInProgress', `finish or roll back the upgrade of "${s.name}" first`, 'scale');
  if (s.global) throw new ValidationError('GlobalService', `"${s.name}" is global: its scale follows its hosts`, 'scale');
  s.scale = scale;
  tx.put('service', s);
  reconcile(tx, s, stack);
  return tx.store.mustGet('service', s.id);
}

export interface ServicePatch {
  scale?: number;
  metadata?: Record<string, unknown>;
  name?: string;
  lbConfig?: LbConfig;
}

/** PUT /v1/services/<id>: checked whole first, so an invalid body changes nothing. */
export function updateService(store: Store, id: string, patch: ServicePatch): Service {
  const s0 = store.mustGet('service', id);
  if (patch.name !== undefined && patch.name !== s0.name) {
    throw new ValidationError('Immutable', 'a service cannot be renamed (its DNS names and containers depend on it)', 'name');
  }
  if (patch.lbConfig !== undefined) {
    if (s0.kind !== 'loadBalancerService') {
      throw new ValidationError('NotABalancer', `"${s0.name}" is a ${s0.kind}: only a loadBalancerService has balancer rules`, 'lbConfig');
    }
    if (s0.upgrade) throw new ConflictError('UpgradeInProgress', `finish or roll back the upgrade of "${s0.name}" first`, 'lbConfig');
    // Resolved (and refused) before anything is written.
    store.tx((tx) => {
      const stack = store.mustGet('stack', s0.stackId);
      resolveLbConfig(tx, stack, patch.lbConfig as LbConfig, API_LB_FIELDS, (field, message, code) => new ValidationError(code ?? 'InvalidReference', message, field));
    });
  }
  if (patch.scale !== undefined) scaleService(store, id, patch.scale);
  return withService(store, id, (tx, s, stack) => {
    if (patch.metadata !== undefined) s.metadata = patch.metadata;
    if (patch.lbConfig !== undefined) {
      if (s.upgrade) throw new ConflictError('UpgradeInProgress', `finish or roll back the upgrade of "${s.name}" first`, 'lbConfig');
      s.lbConfig = resolveLbConfig(tx, stack, patch.lbConfig, API_LB_FIELDS, (field, message, code) => new ValidationError(code ?? 'InvalidReference', message, field));
    }
    return tx.put('service', s);
  });
}

export function setServiceActive(store: Store, id: string, active: boolean): Service {
  return withService(store, id, (tx, s, stack) => {
    s.state = active ? 'active' : 'inactive';
    tx.put('service', s);
    reconcile(tx, s, stack);
    return tx.store.mustGet('service', id);
  });
}

export interface UpgradeInput {
  /** The keys given are merged over the current config (mergeLaunchConfig). */
  launchConfig?: Partial<LaunchConfigInput>;
  secondaryLaunchConfigs?: Partial<LaunchConfigInput>[];
  strategy?: Partial<UpgradeStrategy>;
}

export function upgrade(store: Store, id: string, input: UpgradeInput): Service {
  return withService(store, id, (tx, s, stack) => upgradeIn(tx, s, stack, input, false));
}

/**
 * A launch config given to an upgrade, over the current one: the keys it has replace the current ones,
 * `labels` and `environment` are merged key by key, everything it does not name (volumes, volumes_from,
 * the requested IP, ports, …) is kept. `replace` (a compose file's full definition): taken as it is.
 */
export function mergeLaunchConfig(current: LaunchConfig | undefined, input: Partial<LaunchConfigInput>, replace: boolean): LaunchConfig {
  if (replace || !current) return LaunchConfig.parse(input);
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  return LaunchConfig.parse({
    ...current,
    ...given,
    labels: { ...current.labels, ...(input.labels ?? {}) },
    environment: { ...current.environment, ...(input.environment ?? {}) },
  });
}

/**
 * Starts an upgrade of `s` inside `tx`. Sidekicks given are merged by name over the current ones (those
 * not named are kept); with `replace` the lists and configs given are the whole new definition.
 */
export function upgradeIn(tx: Tx, s: Service, stack: Stack, input: UpgradeInput, replace: boolean): Service {
  if (!runsContainers(s)) throw new ValidationError('NotUpgradable', `"${s.name}" is a ${s.kind}: it runs no containers to upgrade`);
  if (s.upgrade) throw new ConflictError('UpgradeInProgress', `"${s.name}" is already upgraded: finish or roll back first`);
  if (s.state !== 'active') throw new ConflictError('InvalidState', `"${s.name}" is ${s.state}; only an active service can be upgraded`);
  const lc = input.launchConfig ? mergeLaunchConfig(s.launchConfig, input.launchConfig, replace) : (s.launchConfig as LaunchConfig);
  let secondary = s.secondaryLaunchConfigs;
  if (input.secondaryLaunchConfigs) {
    input.secondaryLaunchConfigs.forEach((x, i) => {
      if (!x.name) throw new ValidationError('MissingName', `secondaryLaunchConfigs[${i}] needs a name (the sidekick it upgrades)`, 'secondaryLaunchConfigs');
    });
    if (replace) secondary = input.secondaryLaunchConfigs.map((x) => LaunchConfig.parse(x));
    else {
      const given = new Map(input.secondaryLaunchConfigs.map((x) => [x.name as string, x] as const));
      secondary = s.secondaryLaunchConfigs.map((cur) => {
        const g = given.get(cur.name ?? '');
        return g ? mergeLaunchConfig(cur, g, false) : cur;
      });
      const known = new Set(s.secondaryLaunchConfigs.map((x) => x.name));
      for (const [name, g] of given) if (!known.has(name)) secondary.push(LaunchConfig.parse(g));
    }
  }
  const strategy = UpgradeStrategy.parse({ ...(s.upgradeStrategy ?? {}), ...(input.strategy ?? {}) });
  if (strategy.startFirst) {
    // The new containers run beside the old ones, on addresses of their own: a requested one cannot be
    // held by both.
    for (const x of [lc, ...secondary]) {
      const ip = x.requestedIpAddress ?? x.labels['io.rancher.container.requested_ip'];
      if (ip) {
        throw new ValidationError('StartFirstRequestedIp', `"${s.name}"${x.name ? ` (sidekick ${x.name})` : ''} asks for the address ${ip}, which the old and the new container cannot hold at once: upgrade it with start_first: false`, 'startFirst');
      }
    }
  }
  s.upgrade = {
    previousLaunchConfig: s.launchConfig as LaunchConfig,
    previousSecondaryLaunchConfigs: s.secondaryLaunchConfigs,
    strategy,
    batch: [],
    remaining: [],
    overlap: [],
  };
  s.launchConfig = lc;
  s.secondaryLaunchConfigs = secondary;
  s.state = 'upgraded';
  tx.put('service', s);
  const env = tx.store.mustGet('environment', s.environmentId);
  upgradeService(tx, loadDeployContext(tx, env, stack), s);
  return tx.store.mustGet('service', s.id);
}

/**
 * A rolling restart (rancher-compose `restart --batch-size --interval`): `batchSize` slots at a time are
 * stopped, then started once all have stopped, and the next batch follows `intervalMillis` after they
 * serve (UpgradeDriver moves it along). The containers stay the same (same ids, addresses, volumes).
 */
export function restartService(store: Store, id: string, opts: { batchSize?: number; intervalMillis?: number }): Service {
  return withService(store, id, (tx, s, stack) => {
    if (!runsContainers(s)) throw new ValidationError('NotRestartable', `"${s.name}" is a ${s.kind}: it runs no containers to restart`);
    if (s.upgrade) throw new ConflictError('UpgradeInProgress', `"${s.name}" is being upgraded: finish or roll back first`);
    if (s.restart) throw new ConflictError('RestartInProgress', `"${s.name}" is already restarting (${s.restart.remaining.length + s.restart.batch.length} slots to go)`);
    if (s.state !== 'active') throw new ConflictError('InvalidState', `"${s.name}" is ${s.state}; only an active service can be restarted (drover start starts it)`);
    const env = tx.store.mustGet('environment', s.environmentId);
    beginRestart(tx, loadDeployContext(tx, env, stack), s, opts.batchSize ?? 1, opts.intervalMillis ?? DEFAULT_BATCH_INTERVAL_MS);
    return tx.store.mustGet('service', id);
  });
}

export function finishUpgradeService(store: Store, id: string): Service {
  return withService(store, id, (tx, s, stack) => {
    if (!s.upgrade) throw new ConflictError('NotUpgraded', `"${s.name}" has no upgrade to finish`);
    if (s.upgrade.remaining.length) {
      throw new ConflictError('UpgradeInProgress', `"${s.name}" is upgrading: ${s.upgrade.remaining.length} slots remain (wait, or roll back)`);
    }
    const env = tx.store.mustGet('environment', s.environmentId);
    finishUpgrade(tx, loadDeployContext(tx, env, stack), s);
    // Sidekicks the upgrade dropped are gone for good now: so are their slots' addresses.
    const kept = new Set(s.secondaryLaunchConfigs.map((lc) => lc.name ?? ''));
    for (const old of s.upgrade.previousSecondaryLaunchConfigs) {
      const name = old.name ?? '';
      if (!kept.has(name)) releaseOwnersWithPrefix(tx, s.environmentId, `svc:${s.id}:${name}:`);
    }
    delete s.upgrade;
    s.state = 'active';
    return tx.put('service', s);
  });
}

export function rollback(store: Store, id: string): Service {
  return withService(store, id, (tx, s, stack) => {
    if (!s.upgrade) throw new ConflictError('NotUpgraded', `"${s.name}" has no upgrade to roll back`);
    const env = tx.store.mustGet('environment', s.environmentId);
    s.launchConfig = s.upgrade.previousLaunchConfig;
    s.secondaryLaunchConfigs = s.upgrade.previousSecondaryLaunchConfigs;
    delete s.upgrade;
    s.state = 'active';
    tx.put('service', s);
    rollbackService(tx, loadDeployContext(tx, env, stack), s);
    return tx.store.mustGet('service', id);
  });
}

/** Removes a service, its containers, its links (both ways) and its addresses, in the caller's tx. */
export function removeServiceTx(tx: Tx, s: Service): void {
  for (const c of tx.store.list('container', { service_id: s.id })) removeContainerRecord(tx, null, c);
  for (const l of tx.store.list('serviceLink', { service_id: s.id })) tx.remove('serviceLink', l.id);
  for (const l of tx.store.list('serviceLink', { consumed_service_id: s.id })) tx.remove('serviceLink', l.id);
  releaseOwnersWithPrefix(tx, s.environmentId, `svc:${s.id}:`);
  tx.remove('service', s.id);
}

export function removeService(store: Store, id: string): void {
  store.tx((tx) => removeServiceTx(tx, store.mustGet('service', id)));
}

/** Validates link targets (same environment, not itself) and makes the service's links exactly these. */
export function replaceServiceLinks(tx: Tx, s: Service, links: { serviceId: string; name?: string }[]): ServiceLink[] {
  const want = new Map<string, string | undefined>();
  for (const l of links) {
    const target = tx.store.get('service', l.serviceId);
    if (!target || target.environmentId !== s.environmentId) throw new NotFoundError('service', l.serviceId);
    if (target.id === s.id) throw new ValidationError('SelfLink', 'a service cannot link to itself', 'serviceLinks');
    want.set(target.id, l.name);
  }
  for (const l of tx.store.list('serviceLink', { service_id: s.id })) {
    if (!want.has(l.consumedServiceId)) tx.remove('serviceLink', l.id);
  }
  return [...want].map(([tid, alias]) => insertServiceLink(tx, s, tx.store.mustGet('service', tid), alias));
}

export function setServiceLinks(store: Store, id: string, links: { serviceId: string; name?: string }[]): ServiceLink[] {
  return withService(store, id, (tx, s) => replaceServiceLinks(tx, s, links));
}

export type ServiceInput = Omit<ServiceSpec, 'global' | 'links'> & { serviceLinks: { serviceId: string; name?: string }[] };

/** Creates a service through the API (one transaction): record, links, containers. */
export function createService(store: Store, stackId: string, input: ServiceInput): Service {
  const runs = input.kind === 'service' || input.kind === 'loadBalancerService';
  if (runs && !input.launchConfig) {
    throw new ValidationError('MissingRequired', `a ${input.kind} needs a launchConfig`, 'launchConfig');
  }
  if (input.kind === 'externalService' && !input.externalIpAddresses.length && !input.hostname) {
    throw new ValidationError('MissingRequired', 'an externalService needs externalIpAddresses or hostname', 'externalIpAddresses');
  }
  checkHealthCheck(input.healthCheck);
  return store.tx((tx) => {
    const stack = store.mustGet('stack', stackId);
    const { serviceLinks, ...spec } = input;
    if (spec.lbConfig) {
      spec.lbConfig = resolveLbConfig(tx, stack, spec.lbConfig, API_LB_FIELDS, (field, message, code) => new ValidationError(code ?? 'InvalidReference', message, field));
    }
    const s = insertService(tx, stack, { ...spec, global: isGlobal(input.launchConfig?.labels ?? {}), links: [] });
    replaceServiceLinks(tx, s, serviceLinks);
    deployServices(tx, stack, [s]);
    return tx.store.mustGet('service', s.id);
  });
}

// ---- health strategies -------------------------------------------------------------------------

/** A service's strategy for unhealthy containers; Rancher's default when absent is `recreate`. */
export function healthStrategyOf(s: Service): NonNullable<NonNullable<Service['healthCheck']>['strategy']> | undefined {
  if (!s.healthCheck) return undefined;
  return s.healthCheck.strategy ?? 'recreate';
}

/**
 * Runs the health strategies for health transitions just recorded (in the caller's transaction):
 * `none` only marks (the status store and the published health state already say it); `recreate`
 * replaces each container that became unhealthy with a new one in the same slot, on the same address;
 * `recreateOnQuorum` replaces every unhealthy one, but only while at least `quorum` containers of the
 * service are healthy — re-checked when one becomes healthy too. Only active services' current
 * containers that should run are replaced. Returns how many units were recreated.
 */
export function applyHealthStrategies(tx: Tx, transitions: HealthTransition[]): number {
  const services = new Map<string, { s: Service; unhealthy: Set<string> }>();
  for (const t of transitions) {
    const c = t.container;
    if (!c.serviceId || (t.to !== 'unhealthy' && t.to !== 'healthy')) continue;
    let e = services.get(c.serviceId);
    if (!e) {
      const s = tx.store.get('service', c.serviceId);
      if (!s) continue;
      services.set(c.serviceId, (e = { s, unhealthy: new Set() }));
    }
    if (t.to === 'unhealthy') e.unhealthy.add(c.id);
  }
  let recreated = 0;
  for (const { s, unhealthy } of services.values()) {
    const strategy = healthStrategyOf(s);
    if (!strategy || strategy === 'none' || s.state !== 'active' || !runsContainers(s)) continue;
    if (strategy === 'recreate' && unhealthy.size === 0) continue;
    const stack = tx.store.get('stack', s.stackId);
    const env = tx.store.get('environment', s.environmentId);
    if (!stack || !env) continue;
    const ctx = loadDeployContext(tx, env, stack);
    const current = ctx.containers
      .ofService(s.id)
      .filter((c) => c.generation === 'current' && c.desiredState === 'running' && c.serviceIndex !== null);
    const health = new Map(current.map((c) => [c.id, getStatus(tx.store, c.id)?.healthState ?? c.healthState]));
    let targets: Container[];
    if (strategy === 'recreate') {
      targets = current.filter((c) => unhealthy.has(c.id) && health.get(c.id) === 'unhealthy');
    } else {
      const healthy = current.filter((c) => c.launchConfigName === '' && health.get(c.id) === 'healthy').length;
      if (healthy < (s.healthCheck?.quorum ?? 1)) continue;
      targets = current.filter((c) => health.get(c.id) === 'unhealthy');
    }
    const slots = new Set(targets.map((c) => c.serviceIndex as number));
    for (const index of [...slots].sort((a, b) => a - b)) {
      if (recreateUnit(tx, ctx, s, index).length) recreated++;
    }
  }
  return recreated;
}

/** `recreateOnQuorum` needs its quorum, and a quorum means nothing with another strategy. */
export function checkHealthCheck(h: Service['healthCheck'], field = 'healthCheck'): void {
  if (!h) return;
  if (h.strategy === 'recreateOnQuorum' && h.quorum === undefined) {
    throw new ValidationError('MissingRequired', 'strategy recreateOnQuorum needs a quorum (how many healthy containers to keep)', `${field}.quorum`);
  }
  if (h.quorum !== undefined && h.strategy !== 'recreateOnQuorum') {
    throw new ValidationError('InvalidOption', 'quorum applies only to strategy recreateOnQuorum', `${field}.quorum`);
  }
}

// ---- batched upgrades ----------------------------------------------------------------------------

/** Rancher's pause between batches when a batch size is given without one. */
export const DEFAULT_BATCH_INTERVAL_MS = 2000;

/**
 * Moves batched upgrades along: when every container of a service's batch in progress serves (running,
 * and healthy under a health check — as reported to the status store), it waits the strategy's
 * `intervalMillis`, then replaces the next batch. A batch that never serves holds the upgrade (roll back
 * to undo it). Runs its writes through `exclusive` (one writer at a time).
 */
export class UpgradeDriver {
  private readonly timer: NodeJS.Timeout;
  private readonly servingSince = new Map<string, { batch: string; at: number }>();
  private running = false;
  /** Whether a batched upgrade may be in progress (set at start and by `poke`): idle, nothing is queried. */
  private active = true;

  constructor(
    private readonly store: Store,
    private readonly opts: { tickMs?: number; exclusive?: <T>(fn: () => Promise<T>) => Promise<T>; onError?: (err: unknown) => void } = {},
  ) {
    this.timer = setInterval(() => this.tick(), opts.tickMs ?? 200);
    this.timer.unref();
    store.once('close', () => this.close());
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** An upgrade started: look for batches again. */
  poke(): void {
    this.active = true;
  }

  private tick(): void {
    if (!this.active || this.running || !this.store.db.open) return;
    const ids = (
      this.store
        .statement('upgrade:batched', () => "SELECT id FROM services WHERE json_array_length(data, '$.upgrade.remaining') > 0 OR json_array_length(data, '$.upgrade.overlap') > 0 OR json_type(data, '$.restart') IS NOT NULL")
        .all() as { id: string }[]
    ).map((r) => r.id);
    if (ids.length === 0) {
      this.servingSince.clear();
      this.active = false;
      return;
    }
    this.running = true;
    const run = () => Promise.resolve(this.step(ids));
    (this.opts.exclusive ? this.opts.exclusive(run) : run())
      .catch((err: unknown) => this.opts.onError?.(err))
      .finally(() => (this.running = false));
  }

  /** One pass over the services with batches left; returns how many advanced. */
  step(ids: string[], now = Date.now()): number {
    let advanced = 0;
    for (const id of ids) {
      if (!this.store.db.open) break;
      const s = this.store.get('service', id);
      if (!s) continue;
      const stack = this.store.get('stack', s.stackId);
      const env = this.store.get('environment', s.environmentId);
      if (!stack || !env) continue;
      const serves = (slots: Set<number>) => {
        const cs = this.store.list('container', { service_id: s.id }).filter((c) => c.generation === 'current' && c.serviceIndex !== null && slots.has(c.serviceIndex));
        return cs.length > 0 && cs.every((c) => {
          const st = getStatus(this.store, c.id);
          return st !== undefined && isServing(st, isChecked(this.store, c));
        });
      };
      const overlap = s.upgrade?.overlap ?? [];
      if (s.restart) {
        // A rolling restart: stop the batch, start it, wait the interval once it serves, next batch.
        const r = s.restart;
        if (r.phase === 'start' && r.batch.length) {
          const key = `restart:${r.batch.join(',')}`;
          const ready = this.store.list('container', { service_id: s.id }).filter((c) => c.generation === 'current' && c.serviceIndex !== null && r.batch.includes(c.serviceIndex) && !c.config.startOnce);
          const serving = ready.every((c) => {
            const st = getStatus(this.store, c.id);
            return st !== undefined && isServing(st, isChecked(this.store, c));
          });
          if (!serving) {
            this.servingSince.delete(id);
            continue;
          }
          const since = this.servingSince.get(id);
          if (r.remaining.length && (!since || since.batch !== key)) {
            this.servingSince.set(id, { batch: key, at: now });
            if (r.intervalMillis > 0) continue;
          } else if (r.remaining.length && since && now - since.at < r.intervalMillis) continue;
          this.servingSince.delete(id);
        }
        const moved = this.store.tx((tx) =>
          stepRestart(tx, loadDeployContext(tx, env, stack), tx.store.mustGet('service', id), (c) => {
            const st = getStatus(this.store, c.id);
            return { stopped: st !== undefined && (st.state === 'stopped' || st.state === 'error'), serving: st !== undefined && isServing(st, isChecked(this.store, c)) };
          }),
        );
        if (moved) advanced++;
        continue;
      }
      if (!s.upgrade) continue;
      if (overlap.length) {
        // start_first: the old units of a batch stop once its new ones serve; the next batch waits for that.
        if (!serves(new Set(overlap))) continue;
        this.store.tx((tx) => endOverlap(tx, loadDeployContext(tx, env, stack), tx.store.mustGet('service', id), overlap));
        advanced++;
        continue;
      }
      if (s.upgrade.remaining.length === 0 || s.state !== 'upgrading') continue;
      const inBatch = new Set(s.upgrade.batch);
      const batch = this.store
        .list('container', { service_id: s.id })
        .filter((c) => c.generation === 'current' && c.serviceIndex !== null && inBatch.has(c.serviceIndex));
      const serving =
        batch.length > 0 &&
        batch.every((c) => {
          const st = getStatus(this.store, c.id);
          return st !== undefined && isServing(st, isChecked(this.store, c));
        });
      const key = batch.map((c) => c.id).join(',');
      if (!serving) {
        this.servingSince.delete(id);
        continue;
      }
      const since = this.servingSince.get(id);
      if (!since || since.batch !== key) {
        this.servingSince.set(id, { batch: key, at: now });
        if ((s.upgrade.strategy.intervalMillis ?? DEFAULT_BATCH_INTERVAL_MS) > 0) continue;
      } else if (now - since.at < (s.upgrade.strategy.intervalMillis ?? DEFAULT_BATCH_INTERVAL_MS)) continue;
      this.servingSince.delete(id);
      this.store.tx((tx) => {
        const cur = tx.store.mustGet('service', id);
        advanceUpgrade(tx, loadDeployContext(tx, env, stack), cur);
      });
      advanced++;
    }
    return advanced;
  }
}
