// What agents report about the containers on their host.
import { z } from 'zod';

export const ContainerReport = z.strictObject({
  id: z.string(),
  /** creating | starting | running | stopping | stopped | error | removed */
  state: z.string(),
  exitCode: z.number().int().nullable().optional(),
  externalId: z.string().nullable().optional(),
  healthState: z.string().nullable().optional(),
  startCount: z.number().int().optional(),
  message: z.string().optional(),
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
