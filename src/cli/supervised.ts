// What `drover up` (the supervisor) and its children (`drover server`, `drover agent`) say to each
// other over the IPC channel of child_process: a child reports when it is ready; the server child
// creates registration tokens on request. Both sides validate what they receive.
import { z } from 'zod';

/** Set by the supervisor in its children's environment (with an IPC channel). */
export const SUPERVISED_ENV = 'DROVER_SUPERVISED';

export const ChildMessage = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('server-ready'),
    url: z.string(),
    /** Only on the start that created it (first start): the supervisor writes it to <data>/cli.json. */
    firstAdminKey: z.object({ accessKey: z.string(), secretKey: z.string() }).optional(),
  }),
  z.object({ type: z.literal('agent-ready'), hostId: z.string() }),
  z.object({ type: z.literal('registration-token'), id: z.number().int(), token: z.string() }),
  z.object({ type: z.literal('registration-token-error'), id: z.number().int(), message: z.string() }),
]);
export type ChildMessage = z.infer<typeof ChildMessage>;

export const SupervisorMessage = z.discriminatedUnion('type', [
  z.object({ type: z.literal('registration-token-request'), id: z.number().int() }),
]);
export type SupervisorMessage = z.infer<typeof SupervisorMessage>;

export interface SupervisorChannel {
  send(msg: ChildMessage): void;
  onMessage(fn: (msg: SupervisorMessage) => void): void;
}

/** The channel to the supervisor when this process runs under `drover up`, else undefined. */
export function supervisorChannel(): SupervisorChannel | undefined {
  if (process.env[SUPERVISED_ENV] !== '1' || !process.send) return undefined;
  return {
    send(msg) {
      if (process.connected) process.send?.(msg);
    },
    onMessage(fn) {
      process.on('message', (raw) => {
        const r = SupervisorMessage.safeParse(raw);
        if (r.success) fn(r.data);
      });
    },
  };
}
