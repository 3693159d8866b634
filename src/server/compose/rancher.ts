// One service's entry in rancher-compose.yml: scale, metadata, health check, balancer config, upgrade
// strategy and the external service's targets. Defaults come from the model's schemas.
import {
  HealthCheck,
  LbConfig,
  PortRule,
  UpgradeStrategy,
  type HealthCheck as HealthCheckT,
  type LbConfig as LbConfigT,
  type PortRule as PortRuleT,
  type UpgradeStrategy as UpgradeStrategyT,
} from '../../model/resources.js';
import {
  asBool,
  asInt,
  asMap,
  asNonEmptyString,
  asStringList,
  checkKeys,
  describe,
  fail,
  isIpv4,
  sub,
  unknownKey,
  type Where,
  type YamlMap,
} from './values.js';
import { LIMITS, formatJsonPath, metadataProblem } from '../../model/limits.js';
import { sourcePortProblem } from '../domain/lb-config.js';

export interface RancherService {
  /** The keys the entry has, to check they apply to the service's kind. */
  keys: string[];
  scale?: number;
  metadata?: Record<string, unknown>;
  healthCheck?: HealthCheckT;
  lbConfig?: LbConfigT;
  upgradeStrategy?: UpgradeStrategyT;
  externalIpAddresses?: string[];
  hostname?: string;
  /** start_on_create: false → the service is created inactive (started later by `drover start`). */
  startOnCreate?: boolean;
  /** drain_timeout_ms: how long a container of the service keeps running after it left DNS and balancers. */
  drainTimeoutMs?: number;
}

export const RANCHER_SERVICE_KEYS = [
  'scale',
  'retain_ip',
  'metadata',
  'health_check',
  'lb_config',
  'upgrade_strategy',
  'external_ips',
  'hostname',
  'start_on_create',
  'drain_timeout_ms',
];

const RANCHER_UNSUPPORTED: Record<string, string> = {
  load_balancer_config: 'use "lb_config" with "port_rules"',
  certs: 'put certificates in "lb_config.certs"',
  default_cert: 'put the default certificate in "lb_config.default_cert"',
  scale_policy: '',
  storage_driver: '',
  network_driver: '',
};

/** Only set when the map has the key, so that absent stays absent (no `undefined` members). */
function opt<T>(map: YamlMap, key: string, read: (value: unknown) => T): Record<string, T> {
  return map[key] === undefined || map[key] === null ? {} : { [key]: read(map[key]) };
}

const HEALTH_KEYS = [
  'port',
  'interval',
  'response_timeout',
  'healthy_threshold',
  'unhealthy_threshold',
  'initializing_timeout',
  'reinitializing_timeout',
  'request_line',
  'strategy',
  'recreate_on_quorum_strategy_config',
];
const HEALTH_STRATEGIES = ['none', 'recreate', 'recreateOnQuorum'] as const;

function parseHealthCheck(w: Where, f: string, value: unknown): HealthCheckT {
  const m = asMap(w, f, value);
  checkKeys(w, f, m, HEALTH_KEYS);
  if (m.port === undefined) fail(w, sub(f, 'port'), 'is required');
  if (m.strategy === 'recreateOnQuorum' && (m.recreate_on_quorum_strategy_config ?? null) === null) {
    fail(w, sub(f, 'recreate_on_quorum_strategy_config'), 'is required with strategy recreateOnQuorum (its quorum)');
  }
  const int = (key: string, min: number) => (v: unknown) => asInt(w, sub(f, key), v, min);
  const strategy = (v: unknown): HealthCheckT['strategy'] => {
    const s = HEALTH_STRATEGIES.find((x) => x === v);
    if (!s) fail(w, sub(f, 'strategy'), `${describe(v)} is not a strategy (accepted: ${HEALTH_STRATEGIES.join(', ')})`);
    return s;
  };
  return HealthCheck.parse({
    port: asInt(w, sub(f, 'port'), m.port, 1, 65535),
    ...rename(opt(m, 'interval', int('interval', 1)), 'interval'),
    ...rename(opt(m, 'response_timeout', int('response_timeout', 1)), 'responseTimeout'),
    ...rename(opt(m, 'healthy_threshold', int('healthy_threshold', 1)), 'healthyThreshold'),
    ...rename(opt(m, 'unhealthy_threshold', int('unhealthy_threshold', 1)), 'unhealthyThreshold'),
    ...rename(opt(m, 'initializing_timeout', int('initializing_timeout', 1)), 'initializingTimeout'),
    ...rename(opt(m, 'reinitializing_timeout', int('reinitializing_timeout', 1)), 'reinitializingTimeout'),
    ...rename(opt(m, 'request_line', (v) => asNonEmptyString(w, sub(f, 'request_line'), v)), 'requestLine'),
    ...rename(opt(m, 'strategy', strategy), 'strategy'),
    ...rename(opt(m, 'recreate_on_quorum_strategy_config', (v) => parseQuorum(w, f, m, v)), 'quorum'),
  });
}

/** `recreate_on_quorum_strategy_config: {quorum: N}`, only with `strategy: recreateOnQuorum` (which needs it). */
function parseQuorum(w: Where, f: string, health: YamlMap, value: unknown): number {
  const field = sub(f, 'recreate_on_quorum_strategy_config');
  if (health.strategy !== 'recreateOnQuorum') fail(w, field, 'applies only to strategy recreateOnQuorum');
  const m = asMap(w, field, value);
  checkKeys(w, field, m, ['quorum']);
  if (m.quorum === undefined) fail(w, sub(field, 'quorum'), 'is required');
  return asInt(w, sub(field, 'quorum'), m.quorum, 1);
}

/** `{ snake_key: v }` → `{ camelKey: v }` (or `{}` when absent). */
function rename<T>(one: Record<string, T>, to: string): Record<string, T> {
  const value = Object.values(one)[0];
  return value === undefined ? {} : { [to]: value };
}

const PORT_RULE_KEYS = [
  'source_port',
  'protocol',
  'hostname',
  'path',
  'service',
  'target_port',
  'priority',
  'backend_name',
  'selector',
];
const LB_PROTOCOLS = ['http', 'https', 'tcp', 'tls', 'sni', 'udp'] as const;

function parsePortRule(w: Where, f: string, index: number, value: unknown): PortRuleT {
  const m = asMap(w, f, value);
  checkKeys(w, f, m, PORT_RULE_KEYS);
  if (m.source_port === undefined) fail(w, sub(f, 'source_port'), 'is required');
  const sourcePort = asInt(w, sub(f, 'source_port'), m.source_port, 1, 65535);
  const target = typeof m.service === 'string' ? m.service : typeof m.selector === 'string' ? m.selector : undefined;
  const reserved = sourcePortProblem(index, sourcePort, target);
  if (reserved) fail(w, sub(f, 'source_port'), reserved);
  const protocol = m.protocol === undefined ? 'http' : LB_PROTOCOLS.find((p) => p === m.protocol);
  if (!protocol) fail(w, sub(f, 'protocol'), `${describe(m.protocol)} is not a protocol (accepted: ${LB_PROTOCOLS.join(', ')})`);
  if (m.service === undefined && m.selector === undefined) {
    fail(w, f, 'a port rule needs a target: "service" (<service> or <stack>/<service>) or "selector"');
  }
  const str = (key: string) => (v: unknown) => asNonEmptyString(w, sub(f, key), v);
  return PortRule.parse({
    sourcePort,
    protocol,
    ...opt(m, 'hostname', str('hostname')),
    ...opt(m, 'path', str('path')),
    ...opt(m, 'service', str('service')),
    ...rename(opt(m, 'target_port', (v) => asInt(w, sub(f, 'target_port'), v, 1, 65535)), 'targetPort'),
    ...opt(m, 'priority', (v) => asInt(w, sub(f, 'priority'), v, 0)),
    ...rename(opt(m, 'backend_name', str('backend_name')), 'backendName'),
    ...opt(m, 'selector', str('selector')),
  });
}

const STICKINESS_KEYS = ['name', 'cookie', 'domain', 'indirect', 'nocache', 'postonly', 'mode'];
const STICKINESS_MODES = ['rewrite', 'insert', 'prefix'] as const;

function parseStickiness(w: Where, f: string, value: unknown): LbConfigT['stickinessPolicy'] {
  const m = asMap(w, f, value);
  checkKeys(w, f, m, STICKINESS_KEYS);
  const str = (key: string) => (v: unknown) => asNonEmptyString(w, sub(f, key), v);
  const bool = (key: string) => (v: unknown) => asBool(w, sub(f, key), v);
  const mode = (v: unknown) => {
    const found = STICKINESS_MODES.find((x) => x === v);
    if (!found) fail(w, sub(f, 'mode'), `${describe(v)} is not a mode (accepted: ${STICKINESS_MODES.join(', ')})`);
    return found;
  };
  return {
    ...opt(m, 'name', str('name')),
    ...opt(m, 'cookie', str('cookie')),
    ...opt(m, 'domain', str('domain')),
    ...opt(m, 'indirect', bool('indirect')),
    ...opt(m, 'nocache', bool('nocache')),
    ...opt(m, 'postonly', bool('postonly')),
    ...opt(m, 'mode', mode),
  };
}

const LB_KEYS = ['port_rules', 'certs', 'default_cert', 'certificate_ids', 'default_certificate_id', 'config', 'stickiness_policy'];

/** Only one of two spellings of the same setting (`certs` / `certificate_ids`). */
function oneOf(w: Where, f: string, m: YamlMap, a: string, b: string): unknown {
  if (m[a] !== undefined && m[b] !== undefined) fail(w, sub(f, b), `"${a}" and "${b}" are the same setting; give only one`);
  return m[a] ?? m[b];
}

function parseLbConfig(w: Where, f: string, value: unknown): LbConfigT {
  const m = asMap(w, f, value);
  checkKeys(w, f, m, LB_KEYS);
  const rules = m.port_rules ?? [];
  if (!Array.isArray(rules)) fail(w, sub(f, 'port_rules'), `expected a list of port rules, got ${describe(rules)}`);
  const certs = oneOf(w, f, m, 'certs', 'certificate_ids');
  const defaultCert = oneOf(w, f, m, 'default_cert', 'default_certificate_id');
  const certField = sub(f, m.certs === undefined ? 'certificate_ids' : 'certs');
  const defaultField = sub(f, m.default_cert === undefined ? 'default_certificate_id' : 'default_cert');
  return LbConfig.parse({
    portRules: rules.map((rule: unknown, i) => parsePortRule(w, sub(sub(f, 'port_rules'), i), i, rule)),
    certificateIds: asStringList(w, certField, certs),
    ...(defaultCert === undefined || defaultCert === null
      ? {}
      : { defaultCertificateId: asNonEmptyString(w, defaultField, defaultCert) }),
    ...opt(m, 'config', (v) => asNonEmptyString(w, sub(f, 'config'), v)),
    ...rename(opt(m, 'stickiness_policy', (v) => parseStickiness(w, sub(f, 'stickiness_policy'), v)), 'stickinessPolicy'),
  });
}

/**
 * An upgrade replaces `batch_size` slots at a time (all at once without it), waiting `interval_millis`
 * after each batch serves; a slot's old container stops before its new one starts, or with
 * `start_first: true` after the new one (on an address of its own) serves.
 */
function parseUpgradeStrategy(w: Where, f: string, value: unknown): UpgradeStrategyT {
  const m = asMap(w, f, value);
  checkKeys(w, f, m, ['start_first', 'batch_size', 'interval_millis']);
  const startFirst = m.start_first === undefined || m.start_first === null ? false : asBool(w, sub(f, 'start_first'), m.start_first);
  return UpgradeStrategy.parse({
    startFirst,
    ...rename(opt(m, 'batch_size', (v) => asInt(w, sub(f, 'batch_size'), v, 1, LIMITS.maxScale)), 'batchSize'),
    ...rename(opt(m, 'interval_millis', (v) => asInt(w, sub(f, 'interval_millis'), v, 0, 86_400_000)), 'intervalMillis'),
  });
}

function parseExternalIps(w: Where, f: string, value: unknown): string[] {
  return asStringList(w, f, value, true).map((ip, i) => {
    if (!isIpv4(ip)) fail(w, sub(f, i), `${describe(ip)} is not an IPv4 address`);
    return ip;
  });
}

function parseHostname(w: Where, f: string, value: unknown): string {
  const name = asNonEmptyString(w, f, value);
  if (!/^[a-zA-Z0-9_]([a-zA-Z0-9_.-]*[a-zA-Z0-9])?\.?$/.test(name)) fail(w, f, `${describe(name)} is not a valid host name`);
  return name;
}

/** Free-form metadata: a map, nested at most LIMITS.maxJsonDepth levels and at most LIMITS.maxJsonBytes large. */
function parseMetadata(where: Where, value: unknown): Record<string, unknown> {
  const m = asMap(where, 'metadata', value);
  const p = metadataProblem(m);
  if (p) fail(where, 'metadata', `${formatJsonPath(p.path, 'metadata')} ${p.message}`, p.kind === 'depth' ? 'NestedTooDeep' : undefined);
  return m;
}

export function parseRancherService(where: Where, raw: unknown): RancherService {
  const m = asMap(where, '', raw);
  for (const key of Object.keys(m)) {
    const hint = RANCHER_UNSUPPORTED[key];
    if (hint !== undefined) {
      fail(where, key, `"${key}" is not supported by drover yet${hint ? ` (${hint})` : ''}`, 'UnsupportedComposeKey');
    }
    if (!RANCHER_SERVICE_KEYS.includes(key)) unknownKey(where, key, key, RANCHER_SERVICE_KEYS);
  }
  // retain_ip is checked and dropped: drover always keeps a container's IP across restarts, upgrades and
  // health recreates (the address belongs to the slot), which is what `retain_ip: true` asked for;
  // `false` (a new address each time) is refused rather than ignored.
  if (m.retain_ip !== undefined && m.retain_ip !== null && !asBool(where, 'retain_ip', m.retain_ip)) {
    fail(where, 'retain_ip', '"retain_ip: false" is not supported by drover (a slot keeps its address); remove it', 'UnsupportedComposeKey');
  }
  return {
    keys: Object.keys(m),
    ...opt(m, 'scale', (v) => asInt(where, 'scale', v, 0, LIMITS.maxScale)),
    ...opt(m, 'metadata', (v) => parseMetadata(where, v)),
    ...rename(opt(m, 'health_check', (v) => parseHealthCheck(where, 'health_check', v)), 'healthCheck'),
    ...rename(opt(m, 'lb_config', (v) => parseLbConfig(where, 'lb_config', v)), 'lbConfig'),
    ...rename(opt(m, 'upgrade_strategy', (v) => parseUpgradeStrategy(where, 'upgrade_strategy', v)), 'upgradeStrategy'),
    ...rename(opt(m, 'external_ips', (v) => parseExternalIps(where, 'external_ips', v)), 'externalIpAddresses'),
    ...opt(m, 'hostname', (v) => parseHostname(where, 'hostname', v)),
    ...rename(opt(m, 'start_on_create', (v) => asBool(where, 'start_on_create', v)), 'startOnCreate'),
    ...rename(opt(m, 'drain_timeout_ms', (v) => asInt(where, 'drain_timeout_ms', v, 0, LIMITS.maxDrainMs)), 'drainTimeoutMs'),
  };
}
