// One docker-compose service → a launch config, plus the references (links, volumes_from, depends_on,
// sidekicks) that parse.ts checks once every service of the file is known.
import { LaunchConfig } from '../../model/resources.js';
import type { ServiceLinkSpec } from './spec.js';
import {
  checkVolume,
  parseBytes,
  parseCommand,
  parseExpose,
  parseExtraHosts,
  parseLink,
  parseNetworkMode,
  parsePort,
  parseRestart,
} from './fields.js';
import {
  asBool,
  asInt,
  asMap,
  asNonEmptyString,
  asScalarString,
  asStringList,
  asStringRecord,
  describe,
  fail,
  isIpv4,
  isMap,
  sub,
  unknownKey,
  type Where,
} from './values.js';

export const LABEL_SIDEKICKS = 'io.rancher.sidekicks';
export const LABEL_REQUESTED_IP = 'io.rancher.container.requested_ip';
export const LABEL_START_ONCE = 'io.rancher.container.start_once';
export const LABEL_PULL_IMAGE = 'io.rancher.container.pull_image';
export const LABEL_GLOBAL = 'io.rancher.scheduler.global';

export const EXTERNAL_SERVICE_IMAGE = 'rancher/external-service';
export const DNS_SERVICE_IMAGE = 'rancher/dns-service';
const LB_IMAGES = ['rancher/load-balancer-service', 'rancher/lb-service-haproxy'];

/** What the image alone says about the service kind. */
export type ImageKind = 'externalService' | 'dnsService' | 'loadBalancerService' | 'service';

export function imageKind(image: unknown): ImageKind {
  if (typeof image !== 'string') return 'service';
  if (image.startsWith(EXTERNAL_SERVICE_IMAGE)) return 'externalService';
  if (image.startsWith(DNS_SERVICE_IMAGE)) return 'dnsService';
  if (LB_IMAGES.some((prefix) => image.startsWith(prefix))) return 'loadBalancerService';
  return 'service';
}

/** A name in the file that must be checked against the other services, and where it was written. */
export interface NameRef {
  name: string;
  field: string;
}

export interface LinkRef {
  link: ServiceLinkSpec;
  field: string;
}

export interface ComposeService {
  name: string;
  kind: ImageKind;
  /** Without `dataVolumesFromLaunchConfigs`, which parse.ts fills once sidekicks are known. */
  launchConfig: LaunchConfig;
  /** `links` then `external_links`, in file order. */
  links: LinkRef[];
  volumesFrom: NameRef[];
  dependsOn: NameRef[];
  /** Names in the `io.rancher.sidekicks` label. */
  sidekicks: NameRef[];
  global: boolean;
}

interface Draft {
  lc: Partial<LaunchConfig>;
  links: LinkRef[];
  externalLinks: LinkRef[];
  volumesFrom: NameRef[];
  dependsOn: NameRef[];
  logDriver?: string;
  logOpt?: Record<string, string>;
  networkKey?: string;
}

type Handler = (d: Draft, value: unknown, where: Where, field: string) => void;

function nameRefs(where: Where, field: string, value: unknown): NameRef[] {
  return asStringList(where, field, value).map((name, i) => ({ name, field: sub(field, i) }));
}

function linkRefs(where: Where, field: string, value: unknown, external: boolean): LinkRef[] {
  if (!Array.isArray(value)) fail(where, field, `expected a list of links, got ${describe(value)}`);
  return value.map((item: unknown, i) => ({ link: parseLink(where, sub(field, i), item, external), field: sub(field, i) }));
}

function list<T>(where: Where, field: string, value: unknown, item: (w: Where, f: string, v: unknown) => T): T[] {
  if (value === null) return [];
  if (!Array.isArray(value)) fail(where, field, `expected a list, got ${describe(value)}`);
  return value.map((v: unknown, i) => item(where, sub(field, i), v));
}

function networkMode(d: Draft, value: unknown, where: Where, field: string): void {
  if (d.networkKey) fail(where, field, `"net" and "network_mode" are the same setting; give only one (found "${d.networkKey}" too)`);
  d.networkKey = field;
  d.lc.networkMode = parseNetworkMode(where, field, value);
}

const HANDLERS: Record<string, Handler> = {
  image: (d, v, w, f) => (d.lc.image = asNonEmptyString(w, f, v)),
  command: (d, v, w, f) => (d.lc.command = parseCommand(w, f, v)),
  entrypoint: (d, v, w, f) => (d.lc.entrypoint = parseCommand(w, f, v)),
  environment: (d, v, w, f) => (d.lc.environment = asStringRecord(w, f, v)),
  labels: (d, v, w, f) => (d.lc.labels = asStringRecord(w, f, v)),
  links: (d, v, w, f) => (d.links = linkRefs(w, f, v, false)),
  external_links: (d, v, w, f) => (d.externalLinks = linkRefs(w, f, v, true)),
  ports: (d, v, w, f) => (d.lc.ports = list(w, f, v, parsePort)),
  expose: (d, v, w, f) => (d.lc.expose = list(w, f, v, parseExpose)),
  volumes: (d, v, w, f) => (d.lc.volumes = list(w, f, v, checkVolume)),
  volumes_from: (d, v, w, f) => (d.volumesFrom = nameRefs(w, f, v)),
  dns: (d, v, w, f) => (d.lc.dns = asStringList(w, f, v, true)),
  dns_search: (d, v, w, f) => (d.lc.dnsSearch = asStringList(w, f, v, true)),
  hostname: (d, v, w, f) => (d.lc.hostname = asNonEmptyString(w, f, v)),
  domainname: (d, v, w, f) => (d.lc.domainName = asNonEmptyString(w, f, v)),
  network_mode: networkMode,
  net: networkMode,
  restart: (d, v, w, f) => (d.lc.restartPolicy = parseRestart(w, f, v)),
  tty: (d, v, w, f) => (d.lc.tty = asBool(w, f, v)),
  stdin_open: (d, v, w, f) => (d.lc.stdinOpen = asBool(w, f, v)),
  privileged: (d, v, w, f) => (d.lc.privileged = asBool(w, f, v)),
  read_only: (d, v, w, f) => (d.lc.readOnly = asBool(w, f, v)),
  user: (d, v, w, f) => (d.lc.user = asScalarString(w, f, v)),
  working_dir: (d, v, w, f) => (d.lc.workingDir = asNonEmptyString(w, f, v)),
  cap_add: (d, v, w, f) => (d.lc.capAdd = asStringList(w, f, v)),
  cap_drop: (d, v, w, f) => (d.lc.capDrop = asStringList(w, f, v)),
  devices: (d, v, w, f) => (d.lc.devices = asStringList(w, f, v)),
  security_opt: (d, v, w, f) => (d.lc.securityOpt = asStringList(w, f, v)),
  extra_hosts: (d, v, w, f) => (d.lc.extraHosts = parseExtraHosts(w, f, v)),
  mem_limit: (d, v, w, f) => (d.lc.memory = parseBytes(w, f, v)),
  mem_reservation: (d, v, w, f) => (d.lc.memoryReservation = parseBytes(w, f, v)),
  cpu_shares: (d, v, w, f) => (d.lc.cpuShares = asInt(w, f, v, 1)),
  log_driver: (d, v, w, f) => (d.logDriver = asNonEmptyString(w, f, v)),
  log_opt: (d, v, w, f) => (d.logOpt = asStringRecord(w, f, v)),
  logging: (d, v, w, f) => {
    const map = asMap(w, f, v);
    for (const key of Object.keys(map)) {
      if (key !== 'driver' && key !== 'options') unknownKey(w, sub(f, key), key, ['driver', 'options']);
    }
    if (d.logDriver !== undefined || d.logOpt !== undefined) {
      fail(w, f, 'give either "logging" or "log_driver"/"log_opt", not both');
    }
    if (map.driver === undefined) fail(w, sub(f, 'driver'), 'is required');
    d.logDriver = asNonEmptyString(w, sub(f, 'driver'), map.driver);
    d.logOpt = asStringRecord(w, sub(f, 'options'), map.options);
  },
  stop_signal: (d, v, w, f) => (d.lc.stopSignal = asNonEmptyString(w, f, v)),
  depends_on: (d, v, w, f) => {
    d.dependsOn = nameRefs(w, f, v);
    d.lc.dependsOn = d.dependsOn.map((r) => r.name);
  },
};

export const SUPPORTED_SERVICE_KEYS = Object.keys(HANDLERS);

/** Keys docker-compose knows and drover does not implement yet, with a hint when there is one. */
const UNSUPPORTED: Record<string, string> = {
  build: 'build the image, push it to a registry and use "image"',
  extends: 'copy the settings into the service',
  env_file: 'put the variables in "environment"',
  container_name: 'container names are generated from the stack and service names',
  healthcheck: 'use "health_check" in rancher-compose.yml',
  scale: 'use "scale" in rancher-compose.yml',
  deploy: 'use "scale" and "upgrade_strategy" in rancher-compose.yml and scheduling labels',
  networks: 'containers join the managed network; "network_mode" selects host, bridge or none',
  volume_driver: '',
  pid: '',
  ipc: '',
  cgroup_parent: '',
  mac_address: '',
  cpuset: '',
  cpu_quota: '',
  cpu_period: '',
  cpus: '',
  cpu_count: '',
  cpu_percent: '',
  cpu_rt_runtime: '',
  cpu_rt_period: '',
  memswap_limit: '',
  mem_swappiness: '',
  kernel_memory: '',
  oom_score_adj: '',
  oom_kill_disable: '',
  shm_size: '',
  ulimits: '',
  secrets: '',
  configs: '',
  init: '',
  sysctls: '',
  tmpfs: '',
  stop_grace_period: '',
  group_add: '',
  userns_mode: '',
  uts: '',
  isolation: '',
  blkio_config: '',
  storage_opt: '',
  pids_limit: '',
  runtime: '',
  platform: '',
  profiles: '',
  pull_policy: `use the label ${LABEL_PULL_IMAGE}: always`,
  credential_spec: '',
  device_cgroup_rules: '',
  dockerfile: '',
  lxc_conf: '',
};

/** Keys a service that runs no containers may have. */
const NO_CONTAINER_KEYS: Partial<Record<ImageKind, string[]>> = {
  externalService: ['image'],
  dnsService: ['image', 'links', 'external_links'],
};

function checkKey(where: Where, key: string, kind: ImageKind): void {
  const allowed = NO_CONTAINER_KEYS[kind];
  if (Object.hasOwn(HANDLERS, key)) {
    if (allowed && !allowed.includes(key)) {
      const what = kind === 'externalService' ? 'an external service' : 'a DNS service';
      fail(where, key, `"${key}" does not apply to ${what}, which runs no containers (accepted: ${allowed.join(', ')})`);
    }
    return;
  }
  const hint = UNSUPPORTED[key];
  if (hint !== undefined) {
    fail(where, key, `"${key}" is not supported by drover yet${hint ? ` (${hint})` : ''}`, 'UnsupportedComposeKey');
  }
  unknownKey(where, key, key, SUPPORTED_SERVICE_KEYS);
}

/** Launch config fields that Rancher took from labels (the labels stay too). */
function applyLabels(where: Where, lc: LaunchConfig): void {
  const field = (label: string): string => sub('labels', label);
  const ip = lc.labels[LABEL_REQUESTED_IP];
  if (ip !== undefined) {
    if (!isIpv4(ip)) fail(where, field(LABEL_REQUESTED_IP), `${describe(ip)} is not an IPv4 address`);
    lc.requestedIpAddress = ip;
  }
  const once = lc.labels[LABEL_START_ONCE];
  if (once !== undefined) lc.startOnce = asBool(where, field(LABEL_START_ONCE), once);
  const pull = lc.labels[LABEL_PULL_IMAGE];
  if (pull !== undefined) {
    if (pull !== 'always' && pull !== 'missing' && pull !== 'never') {
      fail(where, field(LABEL_PULL_IMAGE), `${describe(pull)} is not a pull policy (accepted: always; drover also knows missing, never)`);
    }
    lc.pullPolicy = pull;
  }
}

function sidekickRefs(where: Where, lc: LaunchConfig): NameRef[] {
  const label = lc.labels[LABEL_SIDEKICKS];
  if (label === undefined) return [];
  const field = sub('labels', LABEL_SIDEKICKS);
  return label
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((name) => ({ name, field }));
}

export function parseComposeService(where: Where, name: string, raw: unknown): ComposeService {
  if (!isMap(raw)) fail(where, undefined, `a service must be a map of settings, got ${describe(raw)}`);
  const map = raw;
  const kind = imageKind(map.image);
  const d: Draft = { lc: {}, links: [], externalLinks: [], volumesFrom: [], dependsOn: [] };
  for (const [key, value] of Object.entries(map)) {
    checkKey(where, key, kind);
    HANDLERS[key]?.(d, value, where, key);
  }
  if (d.lc.image === undefined) fail(where, 'image', 'is required (drover runs images; "build" is not supported)');
  if (d.logOpt !== undefined && d.logDriver === undefined) fail(where, 'log_opt', 'needs "log_driver"');
  // The model's schema supplies the defaults (empty lists, managed network, pull when missing).
  const launchConfig: LaunchConfig = LaunchConfig.parse({ ...d.lc, image: d.lc.image });
  if (d.logDriver !== undefined) launchConfig.logConfig = { driver: d.logDriver, config: d.logOpt ?? {} };
  applyLabels(where, launchConfig);
  const global = launchConfig.labels[LABEL_GLOBAL];
  return {
    name,
    kind,
    launchConfig,
    links: [...d.links, ...d.externalLinks],
    volumesFrom: d.volumesFrom,
    dependsOn: d.dependsOn,
    sidekicks: sidekickRefs(where, launchConfig),
    global: global === undefined ? false : asBool(where, sub('labels', LABEL_GLOBAL), global),
  };
}
