// Request bodies of the API, validated at the edge.
import { z } from 'zod';
import { AdoptRequest, CapabilityStatus, ContainerReport, MAX_FOUND_PER_REPORT, NetworkStatus } from '../../model/reports.js';
import {
  EnvironmentNetwork,
  JsonMetadata,
  LIMITS,
  LaunchConfig,
  LbConfig,
  PortRule,
  Service,
  StickinessPolicy,
  ServiceKind,
  UpgradeStrategy,
} from '../../model/resources.js';

// Every field is bounded (LIMITS): hostile sizes get a 422 naming the field, never reach the store.
const name = z.string().min(1).max(LIMITS.maxName);
const text = z.string().max(LIMITS.maxString);
const id = z.string().min(1).max(LIMITS.maxName);
const labels = z
  .record(z.string().min(1).max(LIMITS.maxString), text)
  .refine((m) => Object.keys(m).length <= LIMITS.maxMap, { message: `at most ${LIMITS.maxMap} labels` });
const answerValues = z
  .record(z.string().max(LIMITS.maxName), z.union([text, z.number(), z.boolean()]).transform(String))
  .refine((m) => Object.keys(m).length <= LIMITS.maxMap, { message: `at most ${LIMITS.maxMap} answers` });
/** A service's scale: the documented maximum is LIMITS.maxScale (DROVER_MAX_SCALE). */
export const Scale = z
  .number()
  .int()
  .min(0)
  .max(LIMITS.maxScale, { message: `at most ${LIMITS.maxScale} containers per service (the limit is DROVER_MAX_SCALE)` });
const serviceLinkList = z.array(z.strictObject({ serviceId: id, name: name.optional() })).max(LIMITS.maxList);
/** Compose file text: the body limit bounds it (8 MiB). */
const composeText = z.string();

export const EnvironmentCreate = z.strictObject({
  name: z.string().min(1).max(128),
  description: text.optional(),
  network: EnvironmentNetwork.partial().omit({ ipsecPsk: true }).strict().optional(),
});

export const EnvironmentUpdate = EnvironmentCreate.partial();

export const HostUpdate = z.strictObject({
  name: name.optional(),
  labels: labels.optional(),
});

export const ApiKeyCreate = z.strictObject({
  name: name.default('api key'),
  accessKey: z.string().min(8).max(LIMITS.maxName).optional(),
  secretKey: z.string().min(16).max(1024).optional(),
});

export const RegistrationTokenCreate = z.strictObject({
  environmentId: id.optional(),
});

/** `POST /v1/stacks?action=questions`: the catalog questions of a rancher-compose file, before an import. */
export const StackQuestions = z.strictObject({ rancherCompose: composeText });

export const StackCreate = z.strictObject({
  environmentId: id.optional(),
  name,
  description: text.optional(),
  dockerCompose: composeText.optional(),
  rancherCompose: composeText.optional(),
  /** Catalog answers; `environment` is the original API's name for them. */
  answers: answerValues.optional(),
  environment: answerValues.optional(),
  externalId: z.string().max(LIMITS.maxName).optional(),
  /** false: every service is created inactive (the original's "start services after creating" unticked). */
  startOnCreate: z.boolean().optional(),
  /** The stack's containers pull their image first, even when their host has it (`drover stack up --pull`). */
  pull: z.boolean().optional(),
});

export const StackAddServices = z.strictObject({
  dockerCompose: composeText.min(1),
  rancherCompose: composeText.optional(),
  answers: answerValues.optional(),
});

/**
 * An upgrade replaces `batchSize` slots at a time (all at once without it), `intervalMillis` apart once a
 * batch serves. A slot's old container stops first; with `startFirst: true` the new one starts first, on
 * an address of its own, and the old one stops once the new one serves (refused for a requested IP).
 */
const startFirst = z.boolean();
const batchSize = z.number().int().positive().max(LIMITS.maxScale);
const intervalMillis = z.number().int().min(0).max(86_400_000);
/** `drover stack up` on an existing stack (domain/stacks.ts upStack). */
export const StackUp = z.strictObject({
  dockerCompose: composeText.min(1),
  rancherCompose: composeText.optional(),
  answers: answerValues.optional(),
  upgrade: z.boolean().default(false),
  forceUpgrade: z.boolean().default(false),
  pull: z.boolean().default(false),
  batchSize: batchSize.optional(),
  intervalMillis: intervalMillis.optional(),
});

const UpgradeStrategyInput = z
  .strictObject({ startFirst: startFirst.optional(), batchSize: batchSize.optional(), intervalMillis: intervalMillis.optional() })
  .transform((v) => UpgradeStrategy.parse({ ...v, startFirst: v.startFirst ?? false }));

/**
 * A balancer's rules as input: the model's shape with every level strict, so a misspelt or unsupported key
 * (`target_port` instead of `targetPort`, `bogus`) is refused by name instead of dropped.
 */
const LbConfigInput = z.strictObject({
  ...LbConfig.shape,
  portRules: z.array(z.strictObject(PortRule.shape)).max(LIMITS.maxList).default([]),
  stickinessPolicy: z.strictObject(StickinessPolicy.shape).optional(),
});

/**
 * POST /v1/services: the service's own fields as the model defines them, plus what only input has
 * (stricter names and addresses, links to create with it).
 */
export const ServiceCreate = z.strictObject({
  ...Service.pick({
    launchConfig: true,
    secondaryLaunchConfigs: true,
    metadata: true,
    healthCheck: true,
    lbConfig: true,
    upgradeStrategy: true,
    hostname: true,
  }).shape,
  lbConfig: LbConfigInput.optional(),
  upgradeStrategy: UpgradeStrategyInput.optional(),
  stackId: id,
  name,
  kind: ServiceKind.default('service'),
  scale: Scale.default(1),
  externalIpAddresses: z.array(z.ipv4()).max(LIMITS.maxList).default([]),
  serviceLinks: serviceLinkList.default([]),
});

export const ServiceUpdate = z.strictObject({
  name: name.optional(),
  scale: Scale.optional(),
  metadata: JsonMetadata.optional(),
  /** A balancer's rules, replaced whole (loadBalancerService only), resolved like POST /v1/services. */
  lbConfig: LbConfigInput.optional(),
});

/**
 * A launch config given to an upgrade: checked like a stored one (strict: an unknown key is refused by
 * name), and only the keys the client gave are kept — the domain merges them over the current config
 * (services.ts mergeLaunchConfig), so defaults must not stand in for keys that were left out.
 */
const GivenLaunchConfig = z.unknown().transform((raw, ctx) => {
  const r = z.strictObject(LaunchConfig.shape).partial().safeParse(raw);
  if (!r.success) {
    for (const i of r.error.issues) ctx.addIssue({ code: 'custom', message: i.message, path: i.path });
    return z.NEVER;
  }
  const given = new Set(raw !== null && typeof raw === 'object' ? Object.keys(raw) : []);
  return Object.fromEntries(Object.entries(r.data).filter(([k]) => given.has(k))) as Partial<z.output<typeof LaunchConfig>>;
});

export const ServiceUpgrade = z.strictObject({
  inServiceStrategy: z.strictObject({
    launchConfig: GivenLaunchConfig.optional(),
    secondaryLaunchConfigs: z.array(GivenLaunchConfig).max(LIMITS.maxList).optional(),
    startFirst: startFirst.optional(),
    batchSize: batchSize.optional(),
    intervalMillis: intervalMillis.optional(),
  }),
});

/** `POST /v1/containers/<id>?action=execute`: the command of a shell session (a websocket, src/server/api/access-proxy.ts). */
export const ContainerExecute = z.strictObject({
  command: z.array(z.string().min(1).max(4096)).min(1).max(64).default(['sh']),
  tty: z.boolean().default(true),
});

/** `?action=restart`, in the original's form. */
export const ServiceRestartInput = z.strictObject({
  rollingRestartStrategy: z.strictObject({ batchSize: batchSize.optional(), intervalMillis: intervalMillis.optional() }).default({}),
});

export const ServiceLinksSet = z.strictObject({
  serviceLinks: serviceLinkList,
});

export const ContainerCreate = z.strictObject({
  environmentId: id.optional(),
  name,
  hostId: id.optional(),
  launchConfig: LaunchConfig,
  strictRequestedIp: z.boolean().optional(),
});

export const ContainerLinkCreate = z.strictObject({
  containerId: id,
  targetContainerId: id,
  name,
});

export const CertificateCreate = z.strictObject({
  environmentId: id.optional(),
  name,
  description: text.optional(),
  cert: z.string().min(1).max(1 << 20),
  key: z.string().min(1).max(1 << 20),
  certChain: z.string().max(1 << 20).optional(),
});

/** `PUT /v1/certificates/<id>`: new PEMs for the certificate (validated like a new one; the chain is replaced too). */
export const CertificateUpdate = z.strictObject({
  name: name.optional(),
  description: text.optional(),
  cert: z.string().min(1).max(1 << 20),
  key: z.string().min(1).max(1 << 20),
  certChain: z.string().max(1 << 20).optional(),
});

export const AgentRegister = z.strictObject({
  token: z.string().min(1).max(1024),
  uuid: z.uuid().optional(),
  name: name.optional(),
  hostname: name,
  agentIpAddress: z.ipv4(),
  labels: labels.optional(),
  milliCpu: z.number().int().min(0).optional(),
  memory: z.number().int().min(0).optional(),
  localStorageMb: z.number().int().min(0).optional(),
});

export const AgentReport = z.strictObject({
  containers: z.array(ContainerReport).max(LIMITS.maxContainersPerEnvironment).default([]),
  applied: z
    .record(
      z.string().max(LIMITS.maxName),
      CapabilityStatus,
    )
    .default({}),
  /** Hand-started containers the agent found on its host (src/agent/runtime): adopted by the control plane. */
  found: z.array(AdoptRequest).max(MAX_FOUND_PER_REPORT).default([]),
  /** The host's managed network (src/agent/capabilities/network), when it changed. */
  network: NetworkStatus.optional(),
  /** The port of the agent's access endpoints (logs, exec, stats: src/agent/access/server.ts), when it changed. */
  accessPort: z.number().int().min(1).max(65535).optional(),
});

/** `POST /v1/agent/certificate`: the agent's certificate request (certificate mode of the managed network). */
export const AgentCertificateRequest = z.strictObject({ csr: z.string().min(1).max(16 * 1024) });

/** `POST /v1/agent/adopt` (src/agent/runtime): a hand-started container to adopt. */
export const AgentAdopt = AdoptRequest;
