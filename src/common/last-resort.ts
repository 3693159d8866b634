// The last resort: what a drover process does with an error nobody handled.
//   - An unhandled promise rejection is logged (with the command and the stack) and counted; the
//     process goes on: the rejected work is lost, the rest of the state is intact.
//   - An uncaught exception is logged and counted, then the process exits with UNCAUGHT_EXIT_CODE:
//     it was thrown from the middle of something, so the process's state may be inconsistent, and a
//     supervisor (`drover up`, systemd, Docker's restart policy) starts a fresh one.
// Both are counted in drover_unexpected_errors_total{kind} on every registry the process serves.
import { destination } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { createLogger, type Logger } from './log.js';

export type UnexpectedKind = 'unhandledRejection' | 'uncaughtException';

/** Exit status after an uncaught exception (sysexits EX_SOFTWARE: an internal error). */
export const UNCAUGHT_EXIT_CODE = 70;

const METRIC = 'drover_unexpected_errors_total';

interface State {
  command: string;
  level: string;
  log: Logger;
}

let state: State | undefined;
const counters: Counter<'kind'>[] = [];

function count(kind: UnexpectedKind): void {
  for (const c of counters) c.inc({ kind });
}

function asLogged(reason: unknown): Record<string, unknown> {
  return reason instanceof Error ? { err: reason } : { reason: typeof reason === 'string' ? reason : JSON.stringify(reason) ?? String(reason) };
}

/** Counts unexpected errors in this registry too (the one the process serves on /metrics). */
export function countUnexpectedErrorsIn(registry: Registry): void {
  if (registry.getSingleMetric(METRIC)) return;
  const c = new Counter({
    name: METRIC,
    help: 'errors nobody handled, by kind: unhandledRejection (logged; the process goes on) or uncaughtException (logged; the process exits)',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  c.inc({ kind: 'unhandledRejection' }, 0);
  c.inc({ kind: 'uncaughtException' }, 0);
  counters.push(c);
}

/** The log level of the running command (the CLI prints stacks of fatal errors only at debug and trace). */
export function commandLogLevel(): string {
  return state?.level ?? process.env.DROVER_LOG_LEVEL ?? 'info';
}

/**
 * Installs the process-wide handlers (once; a later call updates the command and level). The log goes
 * to stderr synchronously, so the line is out before an exit.
 */
export function installLastResort(opts: { command: string; level?: string | undefined }): void {
  const level = opts.level ?? process.env.DROVER_LOG_LEVEL ?? 'info';
  const log = createLogger({ level, destination: destination({ fd: 2, sync: true }) }).child({ component: 'last-resort' });
  const first = state === undefined;
  state = { command: opts.command, level, log };
  if (!first) return;
  process.on('unhandledRejection', (reason) => {
    count('unhandledRejection');
    const s = state as State;
    s.log.error(
      { kind: 'unhandledRejection', command: s.command, ...asLogged(reason) },
      'unexpected error: a promise was rejected and nothing handled it; the process goes on',
    );
  });
  process.on('uncaughtException', (err, origin) => {
    count('uncaughtException');
    const s = state as State;
    try {
      s.log.fatal(
        { kind: 'uncaughtException', origin, command: s.command, ...asLogged(err) },
        `unexpected error: uncaught exception; exiting with ${UNCAUGHT_EXIT_CODE} (state may be inconsistent) so that a supervisor restarts drover`,
      );
    } finally {
      process.exit(UNCAUGHT_EXIT_CODE);
    }
  });
}
