// Structured logging (pino). One root logger per process; modules take children with a `component`.
// Secrets never go into log fields: redaction covers the usual places as a second line of defence.
import { pino, destination, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** Set by `drover up` for its children: every log line then says which child wrote it ("child":"server"). */
export const LOG_CHILD_ENV = 'DROVER_LOG_CHILD';

export interface LogOptions {
  level?: string;
  /** Write to this destination instead of stderr (tests pass a stream). */
  destination?: NodeJS.WritableStream | DestinationStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.DROVER_LOG_LEVEL ?? 'info';
  return pino(
    {
      level,
      base: { pid: process.pid, ...(process.env[LOG_CHILD_ENV] ? { child: process.env[LOG_CHILD_ENV] } : {}) },
      redact: {
        paths: [
          'secret',
          'secretKey',
          'password',
          'token',
          'key',
          '*.secret',
          '*.secretKey',
          '*.password',
          '*.token',
          'req.headers.authorization',
          'headers.authorization',
        ],
        censor: '[redacted]',
      },
    },
    opts.destination ?? destination({ fd: 2, sync: false }),
  );
}

/** A logger that drops everything (tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
