// Stacks: import from compose files (all or nothing), export back, remove.
import type { Store, Tx } from '../db/store.js';
import { newUuid, nowIso } from '../db/store.js';
import type { Service, Stack } from '../../model/resources.js';
import { ComposeError, ConflictError, SchedulingError, ValidationError } from '../../common/errors.js';
import { exportCompose, parseCompose } from '../compose/index.js';
import type { ComposeFiles, ServiceSpec, StackSpec } from '../compose/spec.js';
import { insertService, insertServiceLink, removeServiceTx, SERVICE_NAME } from './services.js';
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
    addServicesFromSpec(tx, stack, spec.services);
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
      if (err instanceof SchedulingError) {
        throw new ComposeError(DC, s.name, 'labels', `cannot be scheduled: ${err.message}`, 'NoHostAvailable');
      }
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
