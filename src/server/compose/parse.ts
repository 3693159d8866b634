// docker-compose.yml + rancher-compose.yml → StackSpec. Order: YAML syntax of both files, the `.catalog`
// block and the answers, `${VAR}` substitution, each docker-compose service, sidekicks, each
// rancher-compose entry, then the references between services. The first problem throws a ComposeError.
import type { LaunchConfig } from '../../model/resources.js';
import { readCatalog, resolveAnswers } from './catalog.js';
import { isServiceName } from './fields.js';
import { interpolateValue, type ValuePath, type Variables } from './interpolate.js';
import { parseRancherService, type RancherService } from './rancher.js';
import { parseComposeService, type ComposeService, type LinkRef, type NameRef } from './service.js';
import type { CatalogInfo, ComposeInput, ServiceLinkSpec, ServiceSpec, StackSpec } from './spec.js';
import { asMap, describe, fail, isMap, sub, type Where, type YamlMap, loadYaml } from './values.js';

export const DEFAULT_DOCKER_COMPOSE_FILE = 'docker-compose.yml';
export const DEFAULT_RANCHER_COMPOSE_FILE = 'rancher-compose.yml';

interface FileServices {
  /** Service entries in file order, not yet interpolated. */
  services: YamlMap;
  catalog?: { field: string; raw: unknown };
}

function checkVersion(file: string, value: unknown): void {
  const text = typeof value === 'number' || typeof value === 'string' ? String(value) : '';
  if (!/^[23](\.\d+)?$/.test(text)) {
    fail({ file }, 'version', `${describe(value)} is not a supported format version (accepted: "2", "2.x", "3", "3.x"; no "version" key for the v1 format, where services are at the top level)`);
  }
}

/** Top level of docker-compose.yml: v1 (services at the top) or v2/v3 (`version` + `services`). */
function dockerServices(file: string, raw: unknown): FileServices {
  const top = asMap({ file }, '', raw);
  if (top.version === undefined) return { services: top };
  checkVersion(file, top.version);
  for (const [key, value] of Object.entries(top)) {
    if (key === 'version' || key === 'services' || key.startsWith('x-')) continue;
    if (key === 'volumes' || key === 'networks' || key === 'secrets' || key === 'configs') {
      const empty = value === null || (isMap(value) && Object.keys(value).length === 0);
      if (!empty) fail({ file }, key, `top-level "${key}" is not supported yet (drover uses the managed network and per-service volumes)`, 'UnsupportedComposeKey');
      continue;
    }
    fail({ file }, key, `unknown top-level key "${key}" (accepted: version, services, volumes, networks, x-*)`, 'UnknownComposeKey');
  }
  return { services: asMap({ file }, 'services', top.services) };
}

/** Top level of rancher-compose.yml: `.catalog` plus services (v1), or `version` + `services` (v2). */
function rancherServices(file: string, raw: unknown): FileServices {
  const top = asMap({ file }, '', raw);
  const out: FileServices = { services: {} };
  if (top['.catalog'] !== undefined) out.catalog = { field: '.catalog', raw: top['.catalog'] };
  if (top.version === undefined) {
    for (const [key, value] of Object.entries(top)) if (key !== '.catalog') out.services[key] = value;
    return out;
  }
  checkVersion(file, top.version);
  for (const key of Object.keys(top)) {
    if (!['version', 'services', '.catalog', 'catalog'].includes(key)) {
      fail({ file }, key, `unknown top-level key "${key}" (accepted: version, services, .catalog)`, 'UnknownComposeKey');
    }
  }
  if (top.catalog !== undefined) {
    if (out.catalog) fail({ file }, 'catalog', 'give either ".catalog" or "catalog", not both');
    out.catalog = { field: 'catalog', raw: top.catalog };
  }
  out.services = asMap({ file }, 'services', top.services);
  return out;
}

function pathField(path: ValuePath): string | undefined {
  return path.length === 0 ? undefined : path.reduce<string>((field, key) => sub(field, key), '');
}

function interpolateService(where: Where, raw: unknown, vars: Variables): unknown {
  return interpolateValue(raw, vars, (path, message) => fail(where, pathField(path), message));
}

/** Why `ref` cannot be a sidekick of `svc`, or undefined when it can. */
function sidekickProblem(file: string, svc: ComposeService, ref: NameRef, sidekick: ComposeService | undefined, owner: string | undefined): string | undefined {
  if (ref.name === svc.name) return 'a service cannot be its own sidekick';
  if (!sidekick) return `names sidekick "${ref.name}", which is not defined in ${file}`;
  if (owner === svc.name) return `names sidekick "${ref.name}" twice`;
  if (owner !== undefined) return `names sidekick "${ref.name}", which is already a sidekick of "${owner}" (a sidekick belongs to one service)`;
  if (svc.kind === 'externalService' || svc.kind === 'dnsService') {
    return 'an external or DNS service runs no containers and cannot have sidekicks';
  }
  if (sidekick.kind !== 'service') return `sidekick "${ref.name}" must run a container image (not ${sidekick.launchConfig.image})`;
  return undefined;
}

/** The primary of each sidekick; checks sidekicks exist, have one primary and no sidekicks of their own. */
function sidekickOwners(file: string, compose: Map<string, ComposeService>): Map<string, string> {
  const owner = new Map<string, string>();
  for (const svc of compose.values()) {
    for (const ref of svc.sidekicks) {
      const problem = sidekickProblem(file, svc, ref, compose.get(ref.name), owner.get(ref.name));
      if (problem) fail({ file, service: svc.name }, ref.field, problem);
      owner.set(ref.name, svc.name);
    }
  }
  for (const [sidekick, primary] of owner) {
    const own = compose.get(sidekick)?.sidekicks[0];
    if (own) {
      fail({ file, service: sidekick }, own.field, `"${sidekick}" is a sidekick of "${primary}" and cannot name sidekicks of its own (list them all on "${primary}")`);
    }
  }
  return owner;
}

interface Context {
  file: string;
  rancherFile: string;
  compose: Map<string, ComposeService>;
  owner: Map<string, string>;
}

function checkLinkTarget(ctx: Context, svc: ComposeService, ref: LinkRef, self: string): void {
  const { link } = ref;
  if (link.stack !== undefined) return; // other stacks: the server checks they exist
  const where = { file: ctx.file, service: svc.name };
  const primary = ctx.owner.get(link.service);
  if (!ctx.compose.has(link.service)) fail(where, ref.field, `links to service "${link.service}", which is not defined in ${ctx.file}`);
  if (primary !== undefined) fail(where, ref.field, `links to "${link.service}", which is a sidekick of "${primary}"; link to the service "${primary}" instead`);
  if (link.service === self) {
    const who = svc.name === self ? `"${self}"` : `sidekick "${svc.name}" of "${self}"`;
    fail(where, ref.field, `${who} cannot link to its own service`);
  }
}

/** Links of the primary and its sidekicks (Rancher merged them), without repeats. */
function unitLinks(ctx: Context, primary: ComposeService, unit: ComposeService[]): ServiceLinkSpec[] {
  const links = new Map<string, ServiceLinkSpec>();
  for (const svc of unit) {
    for (const ref of svc.links) {
      checkLinkTarget(ctx, svc, ref, primary.name);
      const key = `${ref.link.stack ?? ''}/${ref.link.service}`;
      const existing = links.get(key);
      if (existing && existing.alias !== ref.link.alias) {
        fail({ file: ctx.file, service: svc.name }, ref.field, `links to "${ref.link.service}" again with a different alias (a service links to another once)`);
      }
      links.set(key, ref.link);
    }
  }
  return [...links.values()];
}

function checkNames(ctx: Context, svc: ComposeService, refs: NameRef[], what: string): void {
  for (const ref of refs) {
    const where = { file: ctx.file, service: svc.name };
    if (ref.name === svc.name) fail(where, ref.field, `a service cannot ${what} itself`);
    if (!ctx.compose.has(ref.name)) fail(where, ref.field, `names service "${ref.name}", which is not defined in ${ctx.file}`);
  }
}

/** `volumes_from` may only name sidekicks of the same deployment unit. */
function volumesFrom(ctx: Context, svc: ComposeService, primary: ComposeService): string[] {
  const sidekicks = primary.sidekicks.map((s) => s.name);
  return svc.volumesFrom.map((ref) => {
    if (!sidekicks.includes(ref.name) || ref.name === svc.name) {
      const which = sidekicks.length === 0 ? `"${primary.name}" has no sidekicks` : `sidekicks of "${primary.name}": ${sidekicks.join(', ')}`;
      fail({ file: ctx.file, service: svc.name }, ref.field, `volumes_from may only name a sidekick of the same service (${which}); "${ref.name}" is not one`);
    }
    return ref.name;
  });
}

function launchConfigOf(ctx: Context, svc: ComposeService, primary: ComposeService, name?: string): LaunchConfig {
  checkNames(ctx, svc, svc.dependsOn, 'depend on');
  return {
    ...(name === undefined ? {} : { name }),
    ...svc.launchConfig,
    dataVolumesFromLaunchConfigs: volumesFrom(ctx, svc, primary),
  };
}

const NO_CONTAINERS = new Set(['scale', 'upgrade_strategy', 'lb_config', 'start_on_create', 'drain_timeout_ms']);

/** Checks that the rancher-compose keys of a service apply to its kind. */
function checkRancherKeys(ctx: Context, svc: ServiceSpec, rancher: RancherService): void {
  const where = { file: ctx.rancherFile, service: svc.name };
  for (const key of rancher.keys) {
    if ((key === 'external_ips' || key === 'hostname') && svc.kind !== 'externalService') {
      fail(where, key, `"${key}" applies to external services only (image rancher/external-service)`);
    }
    if (NO_CONTAINERS.has(key) && (svc.kind === 'externalService' || svc.kind === 'dnsService')) {
      fail(where, key, `"${key}" does not apply to ${svc.kind === 'dnsService' ? 'a DNS' : 'an external'} service, which runs no containers`);
    }
    if (key === 'health_check' && svc.kind === 'dnsService') fail(where, key, '"health_check" does not apply to a DNS service');
  }
  if (svc.kind === 'externalService') {
    const hasIps = (rancher.externalIpAddresses ?? []).length > 0;
    if (hasIps && rancher.hostname !== undefined) fail(where, 'hostname', 'an external service has either "external_ips" or "hostname", not both');
    if (!hasIps && rancher.hostname === undefined) {
      fail(where, undefined, 'an external service needs "external_ips" (a list of IPv4 addresses) or "hostname" in rancher-compose.yml');
    }
  }
}

function checkPortRules(ctx: Context, svc: ServiceSpec): void {
  (svc.lbConfig?.portRules ?? []).forEach((rule, i) => {
    const target = rule.service;
    if (target === undefined || target.includes('/')) return;
    const field = `lb_config.port_rules[${i}].service`;
    const where = { file: ctx.rancherFile, service: svc.name };
    if (!ctx.compose.has(target) || ctx.owner.has(target)) {
      fail(where, field, `targets service "${target}", which is not a service of ${ctx.file} (use <stack>/<service> for other stacks)`);
    }
  });
}

function buildService(ctx: Context, primary: ComposeService, rancher: RancherService): ServiceSpec {
  const kind = rancher.lbConfig && primary.kind === 'service' ? 'loadBalancerService' : primary.kind;
  const sidekicks = primary.sidekicks.map((ref) => ctx.compose.get(ref.name)).filter((s) => s !== undefined);
  const runs = kind !== 'externalService' && kind !== 'dnsService';
  const spec: ServiceSpec = {
    name: primary.name,
    kind,
    scale: rancher.scale ?? 1,
    global: runs && primary.global,
    secondaryLaunchConfigs: sidekicks.map((s) => launchConfigOf(ctx, s, primary, s.name)),
    metadata: rancher.metadata ?? {},
    externalIpAddresses: rancher.externalIpAddresses ?? [],
    links: unitLinks(ctx, primary, [primary, ...sidekicks]),
  };
  if (runs) spec.launchConfig = launchConfigOf(ctx, primary, primary);
  if (rancher.healthCheck) spec.healthCheck = rancher.healthCheck;
  if (rancher.lbConfig) spec.lbConfig = rancher.lbConfig;
  if (rancher.upgradeStrategy) spec.upgradeStrategy = rancher.upgradeStrategy;
  if (rancher.hostname !== undefined) spec.hostname = rancher.hostname;
  if (rancher.startOnCreate === false) spec.startOnCreate = false;
  if (rancher.drainTimeoutMs !== undefined) spec.drainTimeoutMs = rancher.drainTimeoutMs;
  checkRancherKeys(ctx, spec, rancher);
  checkPortRules(ctx, spec);
  return spec;
}

/**
 * One service's entry of a rancher-compose file, read as parseCompose reads it (layout, version, `${VAR}`
 * from `answers`, the entry's keys checked); undefined when the file has no entry for it.
 */
export function parseRancherEntry(file: string, text: string, service: string, answers: Record<string, string>): { entry: RancherService | undefined; names: string[] } {
  const { services } = rancherServices(file, loadYaml(file, text));
  const raw = services[service];
  const names = Object.keys(services);
  if (raw === undefined) return { entry: undefined, names };
  const where = { file, service };
  return { entry: parseRancherService(where, interpolateService(where, raw, new Map(Object.entries(answers)))), names };
}

/**
 * The `.catalog` block of a rancher-compose file (template name, version, questions), read and checked
 * as an import reads it; undefined when the file has none. What a client shows as a form before the
 * import (the web UI; answers then go with POST /v1/stacks).
 */
export function parseCatalog(rancherCompose: string, file = DEFAULT_RANCHER_COMPOSE_FILE): CatalogInfo | undefined {
  const rancher = rancherServices(file, loadYaml(file, rancherCompose));
  return rancher.catalog && readCatalog(file, rancher.catalog.field, rancher.catalog.raw);
}

export function parseCompose(input: ComposeInput): StackSpec {
  const file = input.dockerComposeFile ?? DEFAULT_DOCKER_COMPOSE_FILE;
  const rancherFile = input.rancherComposeFile ?? DEFAULT_RANCHER_COMPOSE_FILE;
  const docker = dockerServices(file, loadYaml(file, input.dockerCompose));
  const rancherRaw = input.rancherCompose === undefined ? null : loadYaml(rancherFile, input.rancherCompose);
  const rancher = rancherServices(rancherFile, rancherRaw);
  const catalog: CatalogInfo | undefined = rancher.catalog && readCatalog(rancherFile, rancher.catalog.field, rancher.catalog.raw);
  const answers = resolveAnswers(rancherFile, catalog, input.answers ?? {});
  const vars: Variables = new Map(Object.entries(answers));

  const compose = new Map<string, ComposeService>();
  for (const [name, raw] of Object.entries(docker.services)) {
    const where = { file, service: name };
    if (!isServiceName(name)) {
      fail(where, undefined, 'invalid service name: use letters, digits and "-", starting with a letter or digit, at most 63 characters');
    }
    compose.set(name, parseComposeService(where, name, interpolateService(where, raw, vars)));
  }
  const owner = sidekickOwners(file, compose);
  const ctx: Context = { file, rancherFile, compose, owner };

  const settings = new Map<string, RancherService>();
  for (const [name, raw] of Object.entries(rancher.services)) {
    const where = { file: rancherFile, service: name };
    if (!compose.has(name)) fail(where, undefined, `service "${name}" is not defined in ${file}`);
    const entry = parseRancherService(where, interpolateService(where, raw, vars));
    const primary = owner.get(name);
    if (primary !== undefined && entry.keys.length > 0) {
      const key = entry.keys.includes('scale') ? 'scale' : entry.keys[0];
      const why = key === 'scale' ? `a sidekick has the scale of its primary "${primary}"` : `a sidekick shares the settings of its primary "${primary}"`;
      fail(where, key, `"${name}" is a sidekick of "${primary}": ${why}; set "${key}" on "${primary}"`);
    }
    settings.set(name, entry);
  }

  const services = [...compose.values()]
    .filter((svc) => !owner.has(svc.name))
    .map((svc) => buildService(ctx, svc, settings.get(svc.name) ?? { keys: [] }));
  return { services, ...(catalog ? { catalog } : {}), answers };
}
