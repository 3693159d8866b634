// Stacks: import from compose files (all or nothing), export back, remove.
import type { Store, Tx } from '../db/store.js';
import { newUuid, nowIso } from '../db/store.js';
import { LaunchConfig, type Container, type Service, type Stack } from '../../model/resources.js';
import { ComposeError, ConflictError, ValidationError } from '../../common/errors.js';
import { exportCompose, parseCompose } from '../compose/index.js';
import type { ComposeFiles, ServiceSpec, StackSpec } from '../compose/spec.js';
import { insertService, insertServiceLink, removeServiceTx, replaceServiceLinks, scaleIn, SERVICE_NAME, upgradeIn } from './services.js';
import { canonicalJson } from '../../common/canonical-json.js';
import { runsContainers } from './deploy.js';
import { loadDeployContext, reconcileService } from './deploy.js';
import { COMPOSE_LB_FIELDS, findService, resolveLbConfig } from './lb-config.js';
import { LIMITS } from '../../model/limits.js';

export interface StackInput {
  environmentId: string;
  name: string;
  description?: string;
  dockerCompose?: string;
  rancherCompose?: string;
  answers?: Record<string, string>;
  externalId?: string;
  /** false: every service is created inactive. */
  startOnCreate?: boolean;
  /** The stack's containers pull their image first, even when their host has it. */
  pull?: boolean;
}

const DC = 'docker-compose.yml';
const RC = 'rancher-compose.yml';

/** The compose files of an import, parsed; a stack without docker-compose text has no services. */
export function stackSpecOf(input: Pick<StackInput, 'dockerCompose' | 'rancherCompose' | 'answers'>): StackSpec {
  if (!input.dockerCompose?.trim()) return { services: [], answers: input.answers ?? {} };
  return parseCompose({
    dockerCompose: input.dockerCompose,
    ...(input.rancherCompose !== undefined ? { rancherCompose: input.rancherCompose } : {}),
    ...(input.answers ? { answers: input.answers } : {}),
  });
}

/** Imports a stack; `spec` is its compose files already parsed by the caller (else they are parsed here). */
export function createStack(store: Store, input: StackInput, spec: StackSpec = stackSpecOf(input)): Stack {
  if (!SERVICE_NAME.test(input.name)) {
    throw new ValidationError('InvalidName', `stack name "${input.name}" must be letters, digits and '-' (max 63)`, 'name');
  }

  return store.tx((tx) => {
    store.mustGet('environment', input.environmentId);
    if (store.list('stack', { env_id: input.environmentId, name: input.name }).length) {
      throw new ConflictError('NotUnique', `a stack named "${input.name}" already exists in this environment`, 'name');
    }
    const stack = tx.put('stack', {
      id: tx.newId('stack'),
      uuid: newUuid(),
      environmentId: input.environmentId,
      name: input.name,
      description: input.description ?? spec.catalog?.description ?? '',
      state: 'active',
      dockerCompose: input.dockerCompose ?? '',
      rancherCompose: input.rancherCompose ?? '',
      answers: spec.answers,
      ...(input.externalId ? { externalId: input.externalId } : {}),
      system: false,
      created: nowIso(),
    });
    const services = addServicesFromSpec(tx, stack, input.startOnCreate === false ? spec.services.map((s) => ({ ...s, startOnCreate: false })) : spec.services);
    if (input.pull) pullFirst(tx, services.flatMap((s) => tx.store.list('container', { service_id: s.id })));
    return stack;
  });
}

/** Containers a stack spec asks for (global services count one per host, at least one). */
export function containersOf(specs: ServiceSpec[], hosts: number): number {
  let n = 0;
  for (const s of specs) {
    if (s.kind !== 'service' && s.kind !== 'loadBalancerService') continue;
    n += (s.global ? Math.max(1, hosts) : s.scale) * (1 + s.secondaryLaunchConfigs.length);
  }
  return n;
}

/** The whole import at once against the environment's budget, before any work is done. */
function checkImportBudget(tx: Tx, envId: string, specs: ServiceSpec[]): void {
  const hosts = tx.store.list('host', { env_id: envId }).length;
  const asked = containersOf(specs, hosts);
  const have = (tx.store.statement('countContainers', () => 'SELECT COUNT(*) AS n FROM containers WHERE env_id = ?').get(envId) as { n: number }).n;
  const max = LIMITS.maxContainersPerEnvironment;
  if (have + asked > max) {
    throw new ComposeError(
      RC,
      undefined,
      'scale',
      `the stack asks for ${asked} containers; the environment has ${have} and takes at most ${max} (DROVER_MAX_CONTAINERS; each service at most ${LIMITS.maxScale})`,
      'TooManyContainers',
    );
  }
}

/** Inserts services, their links and balancer references, then deploys them. Used by import. */
export function addServicesFromSpec(tx: Tx, stack: Stack, specs: ServiceSpec[]): Service[] {
  checkImportBudget(tx, stack.environmentId, specs);
  const services = specs.map((spec) => insertService(tx, stack, spec));
  specs.forEach((spec, i) => {
    const from = services[i] as Service;
    for (const link of spec.links) {
      const ref = link.stack ? `${link.stack}/${link.service}` : link.service;
      const field = link.stack ? 'external_links' : 'links';
      const target = findService(tx, stack, ref);
      if (!target) {
        throw new ComposeError(DC, spec.name, field, `links to "${ref}", which does not exist in this environment`);
      }
      insertServiceLink(tx, from, target, link.alias);
    }
    if (spec.lbConfig) {
      from.lbConfig = resolveLbConfig(tx, stack, spec.lbConfig, COMPOSE_LB_FIELDS, (field, message) => new ComposeError(RC, spec.name, field, message));
      tx.put('service', from);
    }
  });
  const env = tx.store.mustGet('environment', stack.environmentId);
  const ctx = loadDeployContext(tx, env, stack);
  for (const s of services) {
    try {
      reconcileService(tx, ctx, s);
    } catch (err) {
      if (err instanceof ValidationError && err.code === 'TooManyContainers') {
        throw new ComposeError(RC, s.name, 'scale', err.message, err.code);
      }
      throw err;
    }
  }
  return services.map((s) => tx.store.mustGet('service', s.id));
}

export function removeStack(store: Store, id: string): void {
  store.tx((tx) => {
    const stack = store.mustGet('stack', id);
    const services = store.list('service', { stack_id: id });
    const ids = new Set(services.map((s) => s.id));
    const blockers = tx.store
      .list('serviceLink', { env_id: stack.environmentId })
      .filter((l) => ids.has(l.consumedServiceId) && !ids.has(l.serviceId));
    if (blockers.length) {
      const names = blockers.map((l) => tx.store.get('service', l.serviceId)?.name ?? l.serviceId);
      throw new ConflictError(
        'StackInUse',
        `services of other stacks link to this stack (${names.join(', ')}); remove those links first`,
      );
    }
    for (const s of services) removeServiceTx(tx, s);
    tx.remove('stack', id);
  });
}

/**
 * Adds services to an existing stack from compose text (`drover stack up` on an existing stack); `spec`
 * as for createStack.
 */
export function addToStack(
  store: Store,
  id: string,
  input: { dockerCompose: string; rancherCompose?: string; answers?: Record<string, string> },
  spec: StackSpec = stackSpecOf(input),
): Service[] {
  return store.tx((tx) => {
    const stack = store.mustGet('stack', id);
    const existing = new Set(store.list('service', { stack_id: id }).map((s) => s.name));
    const fresh = spec.services.filter((s) => !existing.has(s.name));
    return addServicesFromSpec(tx, stack, fresh);
  });
}

/** Exports a stack's current services as docker-compose.yml and rancher-compose.yml text. */
export function exportStack(store: Store, id: string): ComposeFiles {
  const stack = store.mustGet('stack', id);
  const services = store.list('service', { stack_id: id });
  const byId = new Map(store.list('service', { env_id: stack.environmentId }).map((s) => [s.id, s]));
  const stackName = (s: Service) => (s.stackId === stack.id ? undefined : store.get('stack', s.stackId)?.name);
  const certName = (cid: string) => store.get('certificate', cid)?.name ?? cid;
  let catalog: StackSpec['catalog'];
  if (stack.rancherCompose.includes('.catalog')) {
    try {
      catalog = parseCompose({ dockerCompose: stack.dockerCompose, rancherCompose: stack.rancherCompose, answers: stack.answers }).catalog;
    } catch {
      catalog = undefined;
    }
  }
  const spec: StackSpec = {
    answers: stack.answers,
    ...(catalog ? { catalog } : {}),
    services: services.map((s): ServiceSpec => ({
      name: s.name,
      kind: s.kind,
      scale: s.scale,
      global: s.global,
      ...(s.launchConfig ? { launchConfig: s.launchConfig } : {}),
      secondaryLaunchConfigs: s.secondaryLaunchConfigs,
      metadata: s.metadata,
      ...(s.healthCheck ? { healthCheck: s.healthCheck } : {}),
      ...(s.lbConfig
        ? {
            lbConfig: {
              ...s.lbConfig,
              portRules: s.lbConfig.portRules.map(({ serviceId: _sid, ...r }) => r),
              certificateIds: s.lbConfig.certificateIds.map(certName),
              ...(s.lbConfig.defaultCertificateId ? { defaultCertificateId: certName(s.lbConfig.defaultCertificateId) } : {}),
            },
          }
        : {}),
      ...(s.upgradeStrategy ? { upgradeStrategy: s.upgradeStrategy } : {}),
      externalIpAddresses: s.externalIpAddresses,
      ...(s.hostname ? { hostname: s.hostname } : {}),
      ...(s.state === 'inactive' ? { startOnCreate: false } : {}),
      ...(s.drainTimeoutMs !== undefined ? { drainTimeoutMs: s.drainTimeoutMs } : {}),
      links: store.list('serviceLink', { service_id: s.id }).flatMap((l) => {
        const t = byId.get(l.consumedServiceId);
        if (!t) return [];
        const st = stackName(t);
        return [{ service: t.name, ...(st ? { stack: st } : {}), ...(l.name ? { alias: l.name } : {}) }];
      }),
    })),
  };
  return exportCompose(spec);
}

// ---- stack up: create what is new, upgrade what changed (rancher-compose `up [--upgrade]`) ------------

export interface StackUpInput {
  dockerCompose: string;
  rancherCompose?: string;
  answers?: Record<string, string>;
  /** Upgrade the services whose containers' definition changed (`--upgrade`); else they are reported. */
  upgrade: boolean;
  /** Upgrade strategy for this run (over each service's upgrade_strategy). */
  strategy?: { batchSize?: number; intervalMillis?: number };
  /** Upgrade every service of the files that runs containers, changed or not (rancher-compose --force-upgrade). */
  forceUpgrade?: boolean;
  /** The containers this run creates pull their image first, even when the host has it (--pull). */
  pull?: boolean;
}

export type StackUpChange = 'created' | 'upgraded' | 'updated' | 'unchanged' | 'outdated' | 'upgrading';

export interface StackUpOutcome {
  id: string;
  name: string;
  change: StackUpChange;
  /** What differs (fields of the service, `launchConfig`, a sidekick's name), or what to do. */
  detail: string[];
}

const same = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b);

/** The sidekicks as stored: parsed the way the store parsed them, in order. */
const containersDefinition = (lc: unknown, secondary: unknown[]) => canonicalJson([lc === undefined ? null : LaunchConfig.parse(lc), ...secondary.map((x) => LaunchConfig.parse(x))]);

/**
 * `drover stack up` on an existing stack, in one transaction (an error changes nothing): services of the
 * files that the stack lacks are created; of the others, what changed is applied — scale, metadata,
 * balancer rules, health check, upgrade strategy, drain timeout and links in place; a changed container
 * definition (launch config or sidekicks) is upgraded with `upgrade`, otherwise reported as `outdated`.
 * Services of the stack that the files do not have are left as they are (as rancher-compose did).
 */
export function upStack(store: Store, id: string, input: StackUpInput, spec: StackSpec = stackSpecOf(input)): StackUpOutcome[] {
  return store.tx((tx) => {
    const stack = store.mustGet('stack', id);
    const stackContainers = () => tx.store.list('service', { stack_id: id }).flatMap((s) => tx.store.list('container', { service_id: s.id }));
    const before = new Set(input.pull ? stackContainers().map((c) => c.id) : []);
    const existing = new Map(store.list('service', { stack_id: id }).map((s) => [s.name, s] as const));
    const fresh = spec.services.filter((s) => !existing.has(s.name));
    const out: StackUpOutcome[] = addServicesFromSpec(tx, stack, fresh).map((s) => ({ id: s.id, name: s.name, change: 'created', detail: [] }));
    const env = tx.store.mustGet('environment', stack.environmentId);
    for (const sp of spec.services) {
      const s = existing.get(sp.name);
      if (!s) continue;
      if (s.kind !== sp.kind) {
        throw new ComposeError(DC, sp.name, undefined, `is a ${s.kind} in stack "${stack.name}" and a ${sp.kind} in the file: remove the service first to change its kind`, 'KindChanged');
      }
      const detail: string[] = [];
      let change: StackUpChange = 'unchanged';
      const differs = runsContainers(s) && containersDefinition(s.launchConfig, s.secondaryLaunchConfigs) !== containersDefinition(sp.launchConfig, sp.secondaryLaunchConfigs);
      const definitionChanged = differs || (input.forceUpgrade === true && runsContainers(s) && !s.upgrade);
      if (definitionChanged) {
        const what = differs ? changedParts(s, sp) : ['forced'];
        if (s.upgrade) {
          const sameAsUpgrade = containersDefinition(s.launchConfig, s.secondaryLaunchConfigs) === containersDefinition(sp.launchConfig, sp.secondaryLaunchConfigs);
          if (!sameAsUpgrade) throw new ConflictError('UpgradeInProgress', `service "${sp.name}" is being upgraded to another definition: confirm (--confirm-upgrade) or roll back (--rollback) first`);
        } else if (!input.upgrade && !input.forceUpgrade) {
          out.push({ id: s.id, name: s.name, change: 'outdated', detail: [...what, 'run with --upgrade to apply'] });
          continue;
        } else {
          if (s.state !== 'active') throw new ConflictError('InvalidState', `service "${sp.name}" is ${s.state}; start it (drover start) before upgrading it`);
          upgradeIn(tx, s, stack, {
            ...(sp.launchConfig ? { launchConfig: sp.launchConfig } : {}),
            secondaryLaunchConfigs: sp.secondaryLaunchConfigs,
            ...(input.strategy ? { strategy: input.strategy } : {}),
          }, true);
          change = 'upgraded';
          detail.push(...what);
        }
      }
      if (s.upgrade && !definitionChanged) {
        // Unchanged against the upgrade under way: reported, nothing else is changed on it meanwhile.
        out.push({ id: s.id, name: s.name, change: 'upgrading', detail: ['an upgrade is under way: confirm it (--confirm-upgrade) or roll it back (--rollback)'] });
        continue;
      }
      const cur = tx.store.mustGet('service', s.id);
      let touched = false;
      if (!same(cur.metadata, sp.metadata)) {
        cur.metadata = sp.metadata;
        detail.push('metadata');
        touched = true;
      }
      if (!same(cur.healthCheck, sp.healthCheck)) {
        if (sp.healthCheck) cur.healthCheck = sp.healthCheck;
        else delete cur.healthCheck;
        detail.push('health_check');
        touched = true;
      }
      if (!same(cur.upgradeStrategy, sp.upgradeStrategy)) {
        if (sp.upgradeStrategy) cur.upgradeStrategy = sp.upgradeStrategy;
        else delete cur.upgradeStrategy;
        detail.push('upgrade_strategy');
        touched = true;
      }
      if (cur.drainTimeoutMs !== sp.drainTimeoutMs) {
        if (sp.drainTimeoutMs !== undefined) cur.drainTimeoutMs = sp.drainTimeoutMs;
        else delete cur.drainTimeoutMs;
        detail.push('drain_timeout_ms');
        touched = true;
      }
      if (sp.lbConfig) {
        const lb = resolveLbConfig(tx, stack, sp.lbConfig, COMPOSE_LB_FIELDS, (field, message) => new ComposeError(RC, sp.name, field, message));
        if (!same(cur.lbConfig, lb)) {
          if (cur.upgrade) throw new ConflictError('UpgradeInProgress', `service "${sp.name}": confirm or roll back its upgrade before changing lb_config`);
          cur.lbConfig = lb;
          detail.push('lb_config');
          touched = true;
        }
      }
      if (!same([cur.externalIpAddresses, cur.hostname], [sp.externalIpAddresses, sp.hostname])) {
        cur.externalIpAddresses = sp.externalIpAddresses;
        if (sp.hostname !== undefined) cur.hostname = sp.hostname;
        else delete cur.hostname;
        detail.push(sp.hostname !== undefined ? 'hostname' : 'external_ips');
        touched = true;
      }
      if (touched) tx.put('service', cur);
      // Links as the file gives them.
      const wantLinks = sp.links.map((l) => {
        const ref = l.stack ? `${l.stack}/${l.service}` : l.service;
        const target = findService(tx, stack, ref);
        if (!target) throw new ComposeError(DC, sp.name, l.stack ? 'external_links' : 'links', `links to "${ref}", which does not exist in this environment`);
        return { serviceId: target.id, ...(l.alias ? { name: l.alias } : {}) };
      });
      const haveLinks = tx.store.list('serviceLink', { service_id: cur.id }).map((l) => ({ serviceId: l.consumedServiceId, ...(l.name ? { name: l.name } : {}) }));
      const key = (ls: { serviceId: string; name?: string }[]) => canonicalJson([...ls].sort((a, b) => (a.serviceId < b.serviceId ? -1 : 1)));
      if (key(wantLinks) !== key(haveLinks)) {
        replaceServiceLinks(tx, cur, wantLinks);
        detail.push('links');
      }
      if (!cur.global && runsContainers(cur) && cur.scale !== sp.scale && !cur.upgrade) {
        scaleIn(tx, cur, stack, sp.scale);
        detail.push(`scale ${cur.scale} → ${sp.scale}`);
      } else if (touched) {
        reconcileService(tx, loadDeployContext(tx, env, stack), tx.store.mustGet('service', cur.id));
      }
      if (change === 'unchanged' && detail.length) change = 'updated';
      out.push({ id: s.id, name: s.name, change, detail });
    }
    if (input.pull) pullFirst(tx, stackContainers().filter((c) => !before.has(c.id)));
    // The stack keeps the files it was last brought up with (export and the UI show them).
    const st = tx.store.mustGet('stack', id);
    const files = { dockerCompose: input.dockerCompose, rancherCompose: input.rancherCompose ?? '', answers: spec.answers };
    if (!same([st.dockerCompose, st.rancherCompose, st.answers], [files.dockerCompose, files.rancherCompose, files.answers])) tx.put('stack', { ...st, ...files });
    return out;
  });
}

/**
 * `--pull`: these (new) containers pull their image first — their own pull policy; the service's
 * definition, which the next `stack up` compares, is not changed.
 */
function pullFirst(tx: Tx, containers: Container[]): void {
  for (const c of containers) {
    if (c.config.pullPolicy === 'always') continue;
    c.config = { ...c.config, pullPolicy: 'always' };
    tx.put('container', c);
  }
}

/** Which parts of the containers' definition differ: `launchConfig`, and sidekicks by name. */
function changedParts(s: Service, sp: ServiceSpec): string[] {
  const out: string[] = [];
  const norm = (x: unknown) => (x === undefined ? null : LaunchConfig.parse(x));
  if (!same(norm(s.launchConfig), norm(sp.launchConfig))) {
    const a = norm(s.launchConfig) as Record<string, unknown> | null;
    const b = norm(sp.launchConfig) as Record<string, unknown> | null;
    const keys = [...new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})])].filter((k) => !same(a?.[k], b?.[k])).sort();
    out.push(`launch config: ${keys.join(', ')}`);
  }
  const old = new Map(s.secondaryLaunchConfigs.map((x) => [x.name ?? '', x] as const));
  const now = new Map(sp.secondaryLaunchConfigs.map((x) => [x.name ?? '', x] as const));
  for (const [name, x] of now) {
    const o = old.get(name);
    if (!o) out.push(`sidekick ${name} added`);
    else if (!same(norm(o), norm(x))) out.push(`sidekick ${name} changed`);
  }
  for (const name of old.keys()) if (!now.has(name)) out.push(`sidekick ${name} removed`);
  return out;
}
