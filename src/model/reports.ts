// What agents report about the containers on their host.
import { z } from 'zod';
import { HEALTH_STATES } from './liveness.js';
import { LIMITS } from './limits.js';

/**
 * One container as its host's agent observed it. The control plane keeps it in its status store, apart
 * from the revisioned documents (src/server/domain/status.ts); only serving and health-state changes
 * reach the documents. Bounded: a hostile report is refused by field (422), never stored.
 */
export const ContainerReport = z.strictObject({
  id: z.string().min(1).max(LIMITS.maxName),
  /** creating | starting | running | stopping | stopped | error | removed */
  state: z.string().min(1).max(LIMITS.maxName),
  exitCode: z.number().int().nullable().optional(),
  externalId: z.string().max(LIMITS.maxName).nullable().optional(),
  /** The agent's health checker (src/agent/capabilities/health): null when the service has no check. */
  healthState: z.enum(HEALTH_STATES).nullable().optional(),
  startCount: z.number().int().min(0).optional(),
  message: z.string().max(LIMITS.maxString).optional(),
});
export type ContainerReport = z.infer<typeof ContainerReport>;

// ---- adoption (src/agent/runtime) ----------------------------------------------------------------
/**
 * `POST /v1/agent/adopt`: a container started by hand on the agent's host with the label
 * `io.rancher.container.network=true`. The server answers with the container record (idempotent per
 * `externalId`), whose `primaryIpAddress` the agent then gives the container on the managed network.
 */
export const AdoptRequest = z.strictObject({
  /** The docker container id. */
  externalId: z.string().min(1),
  /** The docker container name, without the leading '/'. */
  name: z.string().min(1),
  image: z.string().min(1),
  labels: z.record(z.string(), z.string()).default({}),
  command: z.array(z.string()).optional(),
  /** The address it already has on the managed network, if any (taken when free, like requested_ip). */
  ipAddress: z.ipv4().optional(),
  /** Its current state as the agent reports it (running | stopped). */
  state: z.string().optional(),
});
export type AdoptRequest = z.infer<typeof AdoptRequest>;
export type AdoptRequestInput = z.input<typeof AdoptRequest>;

/**
 * The answer to one `found` container of an agent report (`POST /v1/agent/report`): the record that
 * adopted it, or why it was not adopted.
 */
export const FoundAnswer = z.object({
  externalId: z.string(),
  id: z.string().optional(),
  primaryIpAddress: z.string().nullable().optional(),
  error: z.string().optional(),
});
export type FoundAnswer = z.infer<typeof FoundAnswer>;

/** Found containers per report at most (each is an adoption in the control plane's store); the rest go in the next reports. */
export const MAX_FOUND_PER_REPORT = 100;

// ---- capability status (src/agent/controller) ----------------------------------------------------
/**
 * What an agent reports per capability in `applied`. `revision`, `ok` and `error` are what agents
 * before the controllers sent (still accepted alone); the rest is the controller's status:
 * `state` ok (the revision is in force) / degraded (the last attempt failed or the controller is
 * behind, the last good artefact is still in force) / failed (nothing is in force: never applied, or
 * its sockets are not bound), the time and revision of the last success, attempts and consecutive
 * failures, and when the next retry is due.
 */
export const CapabilityHealth = z.enum(['ok', 'degraded', 'failed']);
export type CapabilityHealth = z.infer<typeof CapabilityHealth>;

export const CapabilityStatus = z.strictObject({
  revision: z.number().int(),
  ok: z.boolean(),
  error: z.string().max(4096).optional(),
  state: CapabilityHealth.optional(),
  message: z.string().max(4096).optional(),
  lastSuccess: z.string().max(64).optional(),
  lastSuccessRevision: z.number().int().optional(),
  attempts: z.number().int().min(0).optional(),
  consecutiveFailures: z.number().int().min(0).optional(),
  nextRetryAt: z.string().max(64).optional(),
});
export type CapabilityStatus = z.infer<typeof CapabilityStatus>;

// ---- managed network status (src/agent/capabilities/network) -------------------------------------
/** One peer host as this host's agent sees it over the overlay (its probes through the tunnels). */
export const PeerStatus = z.strictObject({
  hostId: z.string().min(1).max(LIMITS.maxName),
  reachable: z.boolean(),
  /** Since when `reachable` has had its current value. */
  since: z.string().max(64),
  lastError: z.string().max(1024).optional(),
  rttMs: z.number().min(0).optional(),
});
export type PeerStatus = z.infer<typeof PeerStatus>;

/**
 * The managed network of a host as its agent reports it (`network` of `POST /v1/agent/report`), shown
 * by `GET /v1/hosts`: the overlay mode, the ESP backend charon uses, the containers' MTU it computed and
 * the connectivity matrix row of this host. Observed state: stored apart, no revision.
 */
export const NetworkStatus = z.strictObject({
  mode: z.enum(['ipsec', 'vxlan']),
  backend: z.enum(['kernel', 'libipsec', 'none']),
  mtu: z.number().int().min(0).max(65_535).optional(),
  peers: z.array(PeerStatus).max(LIMITS.maxList),
});
export type NetworkStatus = z.infer<typeof NetworkStatus>;
