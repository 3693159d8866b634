// The narrow slice of the Docker Engine API the runtime reads, validated at the edge: dockerode's types
// are loose (and partly `any`), so every answer we rely on goes through one of these schemas.
import { z } from 'zod';

const labels = z.record(z.string(), z.string()).nullish().transform((l) => l ?? {});

/** One entry of `GET /containers/json?all=1`. */
export const ListedContainer = z.object({
  Id: z.string(),
  Names: z.array(z.string()).default([]),
  Image: z.string().default(''),
  Labels: labels,
  /** created | restarting | running | removing | paused | exited | dead */
  State: z.string(),
  NetworkSettings: z
    .object({
      Networks: z
        .record(z.string(), z.object({ IPAddress: z.string().default('') }).loose())
        .nullish()
        .transform((n) => n ?? {}),
    })
    .loose()
    .nullish(),
});
export type ListedContainer = z.infer<typeof ListedContainer>;

export const ListedContainers = z.array(ListedContainer);

const ZERO_TIME = '0001-01-01T00:00:00Z';

/** The parts of `GET /containers/{id}/json` the runtime uses. */
export const InspectedContainer = z.object({
  Id: z.string(),
  Name: z.string().default(''),
  RestartCount: z.number().int().default(0),
  State: z
    .object({
      Status: z.string(),
      Running: z.boolean().default(false),
      Restarting: z.boolean().default(false),
      ExitCode: z.number().int().default(0),
      Error: z.string().default(''),
      StartedAt: z.string().default(ZERO_TIME),
      FinishedAt: z.string().default(ZERO_TIME),
    })
    .loose(),
  Config: z.object({ Image: z.string().default(''), Labels: labels, Cmd: z.array(z.string()).nullish() }).loose(),
  NetworkSettings: z
    .object({
      Networks: z
        .record(
          z.string(),
          z.object({ IPAddress: z.string().default(''), IPAMConfig: z.object({ IPv4Address: z.string().optional() }).loose().nullish() }).loose(),
        )
        .nullish()
        .transform((n) => n ?? {}),
    })
    .loose(),
  HostConfig: z.object({ NetworkMode: z.string().default('') }).loose(),
});
export type InspectedContainer = z.infer<typeof InspectedContainer>;

/** True when the container has been started at least once. */
export function hasStarted(c: InspectedContainer): boolean {
  return !c.State.StartedAt.startsWith('0001-01-01');
}

/** Milliseconds it ran in its last run (0 when unknown). */
export function lastRunMs(c: InspectedContainer): number {
  const s = Date.parse(c.State.StartedAt);
  const f = Date.parse(c.State.FinishedAt);
  return Number.isFinite(s) && Number.isFinite(f) && f >= s ? f - s : 0;
}

/** `GET /networks/{id}`, the parts we check. */
export const InspectedNetwork = z.object({
  Id: z.string(),
  Name: z.string(),
  Driver: z.string(),
  IPAM: z
    .object({ Config: z.array(z.object({ Subnet: z.string().optional(), Gateway: z.string().optional() }).loose()).nullish() })
    .loose()
    .nullish(),
  Options: z.record(z.string(), z.string()).nullish(),
  Containers: z.record(z.string(), z.unknown()).nullish(),
});
export type InspectedNetwork = z.infer<typeof InspectedNetwork>;

/** One line of the `/events` stream (API ≥ 1.22 form). */
export const DockerEvent = z.object({
  Type: z.string().optional(),
  Action: z.string(),
  Actor: z.object({ ID: z.string(), Attributes: z.record(z.string(), z.string()).nullish().transform((a) => a ?? {}) }),
  time: z.number().optional(),
});
export type DockerEvent = z.infer<typeof DockerEvent> & { /** exact, from the raw line */ timeNano: bigint };

/** Parses one raw event line; the nanosecond time is taken from the text (JSON numbers lose it). */
export function parseEventLine(line: string): DockerEvent | undefined {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return undefined;
  }
  const r = DockerEvent.safeParse(json);
  if (!r.success) return undefined;
  const m = /"timeNano"\s*:\s*(\d+)/.exec(line);
  const timeNano = m ? BigInt(m[1] as string) : BigInt(Math.round((r.data.time ?? 0) * 1e9));
  return { ...r.data, timeNano };
}

/** Errors from dockerode carry the HTTP status as `statusCode`. */
export function dockerStatus(err: unknown): number | undefined {
  if (err && typeof err === 'object' && 'statusCode' in err) {
    const s = (err as { statusCode: unknown }).statusCode;
    return typeof s === 'number' ? s : undefined;
  }
  return undefined;
}

/**
 * The daemon's own message when it sent one (`{"message": …}`), else the error's message without
 * dockerode's `(HTTP code 500) server error - ` prefix.
 */
export function dockerMessage(err: unknown): string {
  if (err && typeof err === 'object' && 'json' in err) {
    const j = (err as { json: unknown }).json;
    if (j && typeof j === 'object' && 'message' in j && typeof (j as { message: unknown }).message === 'string') {
      return (j as { message: string }).message;
    }
  }
  const msg = err instanceof Error ? err.message : String(err);
  return /^\(HTTP code \d+\) [^-]*- (.+)$/s.exec(msg)?.[1]?.trim() || msg;
}
