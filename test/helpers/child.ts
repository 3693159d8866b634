// A drover command as a child process whose JSON log lines (pino, on stderr) tests can wait for.
import { spawn, type ChildProcess } from 'node:child_process';
import { lineSplitter } from '../../src/agent/runtime/lines.js';
import { eventually } from './wait.js';

export type LogLine = Record<string, unknown>;

export interface LoggingChild {
  proc: ChildProcess;
  /** Every stderr line so far, parsed (lines that are not JSON as `{ msg }`). */
  logs: LogLine[];
  /** The first log line that satisfies pred, waiting up to ms for it. */
  waitLog(pred: (l: LogLine) => boolean, ms?: number): Promise<LogLine>;
  /** The first log line with this message, if any yet. */
  logged(msg: string): LogLine | undefined;
  exited: Promise<number | null>;
}

/**
 * Starts `node <nodeArgs>` and collects its log lines. `env` is merged over this process's environment;
 * `stdin: true` gives the child a stdin pipe (proc.stdin) to write to.
 */
export function startLoggingChild(nodeArgs: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdin?: boolean } = {}): LoggingChild {
  const proc = spawn(process.execPath, nodeArgs, {
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  });
  const logs: LogLine[] = [];
  proc.stderr!.on(
    'data',
    lineSplitter((line) => {
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ msg: line });
      }
    }),
  );
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    logs,
    waitLog: (pred, ms = 15_000) => eventually(() => logs.find(pred), ms, `a log line; got: ${JSON.stringify(logs).slice(0, 2000)}`),
    logged: (msg) => logs.find((l) => l.msg === msg),
    exited,
  };
}
