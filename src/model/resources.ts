// The domain model shared by the control plane and the agents.
//
// These schemas are the wire form of every resource: what the server stores (as typed rows + JSON
// columns), what the sync stream sends to agents and what agents persist. The API layer decorates them
// with `type`, `links` and `actions`. Every external edge (sync responses, the persisted agent state)
// validates with these schemas, so the rest of the code can trust the types.
import { z } from 'zod';
import { LIMITS, formatJsonPath, metadataProblem } from './limits.js';
import { NetworkStatus } from './reports.js';

export { LIMITS } from './limits.js';

/** Bounded building blocks (LIMITS): a hostile input is rejected by size, never stored. */
const Str = z.string().max(LIMITS.maxString);
const list = <T extends z.ZodType>(item: T) => z.array(item).max(LIMITS.maxList);
const strList = list(Str);
const strMap = z
  .record(Str, Str)
  .refine((m) => Object.keys(m).length <= LIMITS.maxMap, { message: `at most ${LIMITS.maxMap} entries` });

/** Free-form JSON (service metadata): depth and size bounded, so everything stored can be exported. */
export const JsonMetadata = z.record(z.string(), z.unknown()).superRefine((m, ctx) => {
  const p = metadataProblem(m);
  if (p) ctx.addIssue({ code: 'custom', message: `${formatJsonPath(p.path) || 'the value'} ${p.message}` });
});

export const PROTOCOLS = ['tcp', 'udp'] as const;
export const Protocol = z.enum(PROTOCOLS);

/** A published (`ports`) or exposed (`expose`) port. `publicPort` is absent for expose-only ports. */
export const PortSpec = z.object({
  hostIp: z.string().optional(),
  publicPort: z.number().int().min(1).max(65535).optional(),
  privatePort: z.number().int().min(1).max(65535),
  protocol: Protocol,
});
export type PortSpec = z.infer<typeof PortSpec>;

export const RestartPolicy = z.object({
  name: z.enum(['no', 'always', 'on-failure', 'unless-stopped']),
  maximumRetryCount: z.number().int().min(0).optional(),
});
export type RestartPolicy = z.infer<typeof RestartPolicy>;

export const NetworkMode = z.union([
  z.enum(['managed', 'host', 'bridge', 'none']),
  z.string().regex(/^container:.+$/),
]);
export type NetworkMode = z.infer<typeof NetworkMode>;

/** One container template: the primary launch config of a service or one of its sidekicks. */
export const LaunchConfig = z.object({
  /** Sidekick name; absent for the primary launch config. */
  name: Str.optional(),
  image: Str.min(1),
  command: strList.optional(),
  entrypoint: strList.optional(),
  environment: strMap.default({}),
  labels: strMap.default({}),
  ports: list(PortSpec).default([]),
  expose: list(PortSpec).default([]),
  /** Docker-style volume specs: `container`, `host:container[:mode]`, `name:container[:mode]`. */
  volumes: strList.default([]),
  /** Names of sidekicks of the same service whose volumes this container mounts. */
  dataVolumesFromLaunchConfigs: strList.default([]),
  dns: strList.default([]),
  dnsSearch: strList.default([]),
  hostname: Str.optional(),
  domainName: Str.optional(),
  networkMode: NetworkMode.default('managed'),
  restartPolicy: RestartPolicy.optional(),
  requestedIpAddress: Str.optional(),
  requestedHostId: Str.optional(),
  /** `io.rancher.container.start_once`: run to completion once, never restart. */
  startOnce: z.boolean().default(false),
  /** `io.rancher.container.pull_image`: `always` pulls before each create; default pulls when missing. */
  pullPolicy: z.enum(['always', 'missing', 'never']).default('missing'),
  tty: z.boolean().optional(),
  stdinOpen: z.boolean().optional(),
  privileged: z.boolean().optional(),
  readOnly: z.boolean().optional(),
  user: Str.optional(),
  workingDir: Str.optional(),
  capAdd: strList.optional(),
  capDrop: strList.optional(),
  devices: strList.optional(),
  securityOpt: strList.optional(),
  extraHosts: strList.optional(),
  /** Memory limit in bytes. */
  memory: z.number().int().positive().optional(),
  memoryReservation: z.number().int().positive().optional(),
  cpuShares: z.number().int().positive().optional(),
  milliCpuReservation: z.number().int().positive().optional(),
  logConfig: z.object({ driver: Str, config: strMap.default({}) }).optional(),
  stopSignal: Str.optional(),
  /** Compose `depends_on` (start ordering hint, kept for export). */
  dependsOn: strList.optional(),
});
export type LaunchConfig = z.infer<typeof LaunchConfig>;
export type LaunchConfigInput = z.input<typeof LaunchConfig>;

export const HealthCheck = z.object({
  port: z.number().int().min(1).max(65535),
  interval: z.number().int().positive().default(2000),
  responseTimeout: z.number().int().positive().default(2000),
  healthyThreshold: z.number().int().positive().default(2),
  unhealthyThreshold: z.number().int().positive().default(3),
  initializingTimeout: z.number().int().positive().optional(),
  reinitializingTimeout: z.number().int().positive().optional(),
  requestLine: Str.optional(),
  /** What the control plane does with an unhealthy container; absent means `recreate` (Rancher's default). */
  strategy: z.enum(['none', 'recreate', 'recreateOnQuorum']).optional(),
  /** `recreateOnQuorum`: recreate only while at least this many containers of the service are healthy. */
  quorum: z.number().int().positive().optional(),
});
export type HealthCheck = z.infer<typeof HealthCheck>;

export const PortRule = z.object({
  sourcePort: z.number().int().min(1).max(65535),
  protocol: z.enum(['http', 'https', 'tcp', 'tls', 'sni', 'udp']),
  hostname: Str.optional(),
  path: Str.optional(),
  /** `<stack>/<service>` or `<service>` (same stack), as written by the user. */
  service: Str.optional(),
  /** Resolved target service id (set by the control plane). */
  serviceId: Str.optional(),
  targetPort: z.number().int().min(1).max(65535).optional(),
  priority: z.number().int().optional(),
  backendName: Str.optional(),
  selector: Str.optional(),
});
export type PortRule = z.infer<typeof PortRule>;

export const StickinessPolicy = z.object({
  name: Str.optional(),
  cookie: Str.optional(),
  domain: Str.optional(),
  indirect: z.boolean().optional(),
  nocache: z.boolean().optional(),
  postonly: z.boolean().optional(),
  mode: z.enum(['rewrite', 'insert', 'prefix']).optional(),
});

export const LbConfig = z.object({
  portRules: list(PortRule).default([]),
  certificateIds: strList.default([]),
  defaultCertificateId: Str.optional(),
  config: Str.optional(),
  stickinessPolicy: StickinessPolicy.optional(),
});
export type LbConfig = z.infer<typeof LbConfig>;

export const UpgradeStrategy = z.object({
  startFirst: z.boolean().default(false),
  /** Slots replaced per batch; absent: every slot at once. */
  batchSize: z.number().int().positive().optional(),
  /** Pause between batches once a batch serves (ms); with batchSize, 2000 when absent (Rancher's default). */
  intervalMillis: z.number().int().min(0).optional(),
});
export type UpgradeStrategy = z.infer<typeof UpgradeStrategy>;

export const SERVICE_KINDS = ['service', 'loadBalancerService', 'dnsService', 'externalService'] as const;
export const ServiceKind = z.enum(SERVICE_KINDS);
export type ServiceKind = z.infer<typeof ServiceKind>;

export const DNS_SCOPES = ['linked', 'stack', 'environment'] as const;
export const DnsScope = z.enum(DNS_SCOPES);
export type DnsScope = z.infer<typeof DnsScope>;

export const EnvironmentNetwork = z.object({
  subnet: z.string().default('10.42.0.0/16'),
  dnsScope: DnsScope.default('linked'),
  /** Whether queries from non-container addresses (the host itself) get the environment view. */
  hostDnsView: z.boolean().default(false),
  overlay: z.enum(['ipsec', 'vxlan']).default('ipsec'),
  /**
   * How the hosts' charons authenticate each other (IPsec mode): the environment's pre-shared key, or
   * per-host certificates issued by the environment's CA (revocable one host at a time).
   */
  ipsecAuth: z.enum(['psk', 'cert']).default('psk'),
  /** IPsec pre-shared key (hex); only ever sent to registered agents. */
  ipsecPsk: z.string().optional(),
  /** VXLAN network identifier of the overlay (both modes carry container traffic in VXLAN). */
  vxlanVni: z.number().int().min(1).max(16_777_215).default(42),
  mtu: z.number().int().min(576).max(9000).optional(),
});
export type EnvironmentNetwork = z.infer<typeof EnvironmentNetwork>;

export const Environment = z.object({
  id: z.string(),
  uuid: z.string(),
  name: z.string(),
  description: z.string().default(''),
  state: z.string(),
  network: EnvironmentNetwork,
  created: z.string(),
});
export type Environment = z.infer<typeof Environment>;

/** A capability's status on a host as the control plane shows it: the agent's report (src/model/reports.ts) and when it came. */
export const AppliedStatus = z.object({
  revision: z.number().int(),
  ok: z.boolean(),
  error: z.string().optional(),
  state: z.enum(['ok', 'degraded', 'failed']).optional(),
  message: z.string().optional(),
  lastSuccess: z.string().optional(),
  lastSuccessRevision: z.number().int().optional(),
  attempts: z.number().int().optional(),
  consecutiveFailures: z.number().int().optional(),
  nextRetryAt: z.string().optional(),
  at: z.string(),
});
export type AppliedStatus = z.infer<typeof AppliedStatus>;

export const Host = z.object({
  id: z.string(),
  uuid: z.string(),
  environmentId: z.string(),
  name: z.string(),
  hostname: z.string(),
  agentIpAddress: z.string(),
  labels: z.record(z.string(), z.string()).default({}),
  state: z.string(),
  agentState: z.string(),
  milliCpu: z.number().int().optional(),
  memory: z.number().int().optional(),
  localStorageMb: z.number().int().optional(),
  lastSeen: z.string().optional(),
  applied: z.record(z.string(), AppliedStatus).default({}),
  /**
   * The host's address on the overlay (one managed address per host, IPAM owner `host:<id>`): the
   * VXLAN endpoint and IPsec traffic selector in IPsec mode, the probe address in both modes.
   */
  tunnelIp: z.string().optional(),
  /** Its IPsec certificate was revoked: peers refuse it and drop it from the mesh. */
  certificateRevoked: z.boolean().optional(),
  /** What its agent last reported about the managed network (observed, not revisioned). */
  network: NetworkStatus.optional(),
  created: z.string(),
});
export type Host = z.infer<typeof Host>;

export const Stack = z.object({
  id: z.string(),
  uuid: z.string(),
  environmentId: z.string(),
  name: z.string(),
  description: z.string().default(''),
  state: z.string(),
  dockerCompose: z.string().default(''),
  rancherCompose: z.string().default(''),
  /** Catalog answers (`environment` in the original API). */
  answers: z.record(z.string(), z.string()).default({}),
  externalId: z.string().optional(),
  system: z.boolean().default(false),
  created: z.string(),
});
export type Stack = z.infer<typeof Stack>;

export const ServiceUpgrade = z.object({
  previousLaunchConfig: LaunchConfig,
  previousSecondaryLaunchConfigs: z.array(LaunchConfig),
  strategy: UpgradeStrategy,
  /** Batched upgrade: the slots of the batch in progress, and the slots still to replace, in order. */
  batch: z.array(z.number().int()).default([]),
  remaining: z.array(z.number().int()).default([]),
  /** start_first: slots whose old unit still runs beside the new one (stopped once the new one serves). */
  overlap: z.array(z.number().int()).default([]),
});

/** A rolling restart under way (POST /v1/services/<id>?action=restart): `batchSize` slots at a time. */
export const ServiceRestart = z.object({
  batchSize: z.number().int().positive(),
  intervalMillis: z.number().int().min(0),
  /** Slots still to restart, in order; the batch in progress and whether it is stopping or starting. */
  remaining: z.array(z.number().int()),
  batch: z.array(z.number().int()),
  phase: z.enum(['stop', 'start']),
});

export const Service = z.object({
  id: z.string(),
  uuid: z.string(),
  environmentId: z.string(),
  stackId: z.string(),
  name: z.string(),
  kind: ServiceKind,
  state: z.string(),
  scale: z.number().int().min(0),
  /** `io.rancher.scheduler.global`: one container per matching host; `scale` is then derived. */
  global: z.boolean().default(false),
  launchConfig: LaunchConfig.optional(),
  secondaryLaunchConfigs: list(LaunchConfig).default([]),
  metadata: JsonMetadata.default({}),
  healthCheck: HealthCheck.optional(),
  lbConfig: LbConfig.optional(),
  upgradeStrategy: UpgradeStrategy.optional(),
  /**
   * rancher-compose `drain_timeout_ms`: a container of the service that is scaled away, moved, upgraded or
   * stopped keeps running this long after DNS and the balancers left it (absent: the agent's drainMs).
   */
  drainTimeoutMs: z.number().int().min(0).max(LIMITS.maxDrainMs).optional(),
  externalIpAddresses: strList.default([]),
  /** externalService with a hostname: the CNAME target. */
  hostname: Str.optional(),
  vip: z.string().optional(),
  fqdn: z.string().optional(),
  createIndex: z.number().int().default(0),
  upgrade: ServiceUpgrade.optional(),
  restart: ServiceRestart.optional(),
  system: z.boolean().default(false),
  created: z.string(),
});
export type Service = z.infer<typeof Service>;

export const CONTAINER_DESIRED_STATES = ['running', 'stopped', 'removed'] as const;

export const Container = z.object({
  id: z.string(),
  uuid: z.string(),
  environmentId: z.string(),
  hostId: z.string().nullable(),
  stackId: z.string().nullable(),
  serviceId: z.string().nullable(),
  name: z.string(),
  /** Sidekick name, or '' for a service's primary launch config and for standalone containers. */
  launchConfigName: z.string().default(''),
  serviceIndex: z.number().int().nullable(),
  createIndex: z.number().int().default(0),
  /** Deployment unit: the primary and its sidekicks share it. */
  deploymentUnitUuid: z.string().nullable(),
  primaryIpAddress: z.string().nullable(),
  /** Reported by the agent: creating | starting | running | stopping | stopped | error | removed. */
  state: z.string(),
  desiredState: z.enum(CONTAINER_DESIRED_STATES),
  /** 'current', or 'previous' for the containers an upgrade keeps for rollback. */
  generation: z.enum(['current', 'previous']).default('current'),
  exitCode: z.number().int().nullable().default(null),
  externalId: z.string().nullable().default(null),
  healthState: z.string().nullable().default(null),
  startCount: z.number().int().default(0),
  /** The resolved launch config (system labels included). */
  config: LaunchConfig,
  /** Started by hand on a host and adopted through its io.rancher.* labels. */
  adopted: z.boolean().default(false),
  transitioningMessage: z.string().optional(),
  created: z.string(),
});
export type Container = z.infer<typeof Container>;

export const ServiceLink = z.object({
  id: z.string(),
  environmentId: z.string(),
  serviceId: z.string(),
  consumedServiceId: z.string(),
  /** Link alias; '' when the link has none. */
  name: z.string().default(''),
  ports: z.array(z.string()).default([]),
  created: z.string(),
});
export type ServiceLink = z.infer<typeof ServiceLink>;

export const ContainerLink = z.object({
  id: z.string(),
  environmentId: z.string(),
  containerId: z.string(),
  targetContainerId: z.string(),
  name: z.string(),
  created: z.string(),
});
export type ContainerLink = z.infer<typeof ContainerLink>;

export const Certificate = z.object({
  id: z.string(),
  environmentId: z.string(),
  name: z.string(),
  description: z.string().default(''),
  cert: z.string(),
  certChain: z.string().optional(),
  /** The private key: stored, sent to agents (balancers need it), never returned by the API. */
  key: z.string().optional(),
  commonName: z.string().optional(),
  subjectAlternativeNames: z.array(z.string()).default([]),
  expiresAt: z.string().optional(),
  fingerprint: z.string().optional(),
  created: z.string(),
});
export type Certificate = z.infer<typeof Certificate>;

/** The resource kinds an environment's state is made of, as the sync stream names them. */
export const STATE_KINDS = [
  'host',
  'stack',
  'service',
  'container',
  'serviceLink',
  'containerLink',
  'certificate',
] as const;
export type StateKind = (typeof STATE_KINDS)[number];

export const STATE_SCHEMAS = {
  host: Host,
  stack: Stack,
  service: Service,
  container: Container,
  serviceLink: ServiceLink,
  containerLink: ContainerLink,
  certificate: Certificate,
} as const;

export interface StateTypes {
  host: Host;
  stack: Stack;
  service: Service;
  container: Container;
  serviceLink: ServiceLink;
  containerLink: ContainerLink;
  certificate: Certificate;
}
