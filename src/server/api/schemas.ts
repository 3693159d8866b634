// Request bodies of the API, validated at the edge.
import { z } from 'zod';
import { AdoptRequest, ContainerReport } from '../../model/reports.js';
import {
  EnvironmentNetwork,
  LaunchConfig,
  Service,
  ServiceKind,
} from '../../model/resources.js';

const labels = z.record(z.string().min(1), z.string());

export const EnvironmentCreate = z.strictObject({
  name: z.string().min(1).max(128),
  description: z.string().optional(),
  network: EnvironmentNetwork.partial().omit({ ipsecPsk: true }).strict().optional(),
});

export const EnvironmentUpdate = EnvironmentCreate.partial();

export const HostUpdate = z.strictObject({
  name: z.string().min(1).optional(),
  labels: labels.optional(),
});

export const ApiKeyCreate = z.strictObject({
  name: z.string().min(1).default('api key'),
  accessKey: z.string().min(8).optional(),
  secretKey: z.string().min(16).optional(),
});

export const RegistrationTokenCreate = z.strictObject({
  environmentId: z.string().optional(),
});

export const StackCreate = z.strictObject({
  environmentId: z.string().optional(),
  name: z.string().min(1),
  description: z.string().optional(),
  dockerCompose: z.string().optional(),
  rancherCompose: z.string().optional(),
  /** Catalog answers; `environment` is the original API's name for them. */
  answers: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).optional(),
  environment: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)).optional(),
  externalId: z.string().optional(),
  startOnCreate: z.boolean().optional(),
});

export const StackAddServices = z.strictObject({
  dockerCompose: z.string().min(1),
  rancherCompose: z.string().optional(),
  answers: z.record(z.string(), z.string()).optional(),
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
  stackId: z.string().min(1),
  name: z.string().min(1),
  kind: ServiceKind.default('service'),
  scale: z.number().int().min(0).default(1),
  externalIpAddresses: z.array(z.ipv4()).default([]),
  serviceLinks: z.array(z.strictObject({ serviceId: z.string(), name: z.string().optional() })).default([]),
});

export const ServiceUpdate = z.strictObject({
  name: z.string().optional(),
  scale: z.number().int().min(0).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

export const ServiceUpgrade = z.strictObject({
  inServiceStrategy: z.strictObject({
    launchConfig: LaunchConfig.optional(),
    secondaryLaunchConfigs: z.array(LaunchConfig).optional(),
    startFirst: z.boolean().optional(),
    batchSize: z.number().int().positive().optional(),
    intervalMillis: z.number().int().min(0).optional(),
  }),
});

export const ServiceLinksSet = z.strictObject({
  serviceLinks: z.array(z.strictObject({ serviceId: z.string(), name: z.string().optional() })),
});

export const ContainerCreate = z.strictObject({
  environmentId: z.string().optional(),
  name: z.string().min(1),
  hostId: z.string().optional(),
  launchConfig: LaunchConfig,
  strictRequestedIp: z.boolean().optional(),
});

export const ContainerLinkCreate = z.strictObject({
  containerId: z.string(),
  targetContainerId: z.string(),
  name: z.string().min(1),
});

export const CertificateCreate = z.strictObject({
  environmentId: z.string().optional(),
  name: z.string().min(1),
  description: z.string().optional(),
  cert: z.string().min(1),
  key: z.string().min(1),
  certChain: z.string().optional(),
});

export const AgentRegister = z.strictObject({
  token: z.string().min(1),
  uuid: z.uuid().optional(),
  name: z.string().optional(),
  hostname: z.string().min(1),
  agentIpAddress: z.ipv4(),
  labels: labels.optional(),
  milliCpu: z.number().int().optional(),
  memory: z.number().int().optional(),
  localStorageMb: z.number().int().optional(),
});

export const AgentReport = z.strictObject({
  containers: z.array(ContainerReport).default([]),
  applied: z
    .record(
      z.string(),
      z.strictObject({ revision: z.number().int(), ok: z.boolean(), error: z.string().optional() }),
    )
    .default({}),
});

/** `POST /v1/agent/adopt` (src/agent/runtime): a hand-started container to adopt. */
export const AgentAdopt = AdoptRequest;
