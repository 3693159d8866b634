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
