// The child processes of `drover up`: each runs a drover subcommand of this same binary, with an IPC
// channel for readiness. A child that exits unexpectedly is restarted with exponential backoff; after
// too many exits in a short time the supervisor gives up. Stopping sends SIGTERM and waits, then
// SIGKILL after a timeout. The children write to the supervisor's own stdout and stderr (their JSON log
// lines name them: "child":"server"), so a supervisor that is killed leaves them no broken pipe.
import { spawn, type ChildProcess } from 'node:child_process';
import { LOG_CHILD_ENV, type Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import { ChildMessage, SUPERVISED_ENV, type SupervisorMessage } from './supervised.js';

export interface RestartPolicy {
  /** Delay before the first restart; doubled for every further exit within rapidWindowMs. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** This many exits within rapidWindowMs and the supervisor gives up. */
  maxRapidExits: number;
  rapidWindowMs: number;
  /** How long a child has to stop after SIGTERM before it gets SIGKILL. */
  stopTimeoutMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  initialDelayMs: 250,
  maxDelayMs: 8_000,
  maxRapidExits: 5,
  rapidWindowMs: 60_000,
  stopTimeoutMs: 10_000,
};

export interface ChildOptions {
  log: Logger;
  policy: RestartPolicy;
  /** The subcommand and its flags (and extra environment), computed at every start. */
  command(): Promise<{ args: string[]; env?: Record<string, string> }>;
  /** Every valid message of the child but the replies to requests. */
  onMessage(msg: ChildMessage): void;
  /** The child cannot be kept running: the supervisor stops everything and exits 1. */
  onGiveUp(message: string): void;
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `killed by ${signal}` : `exit code ${String(code)}`;
}

/** How this process was started (node, its flags, the script), to start children the same way. */
function selfCommand(): { execPath: string; prefix: string[] } {
  // An inspector port would be taken twice.
  const execArgv = process.execArgv.filter((a) => !/^--inspect|^--debug/.test(a));
  return { execPath: process.execPath, prefix: [...execArgv, process.argv[1] as string] };
}

export class SupervisedChild {
  private proc: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private recentExits: number[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private everReady = false;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(token: string): void; reject(err: Error): void }>();
  /** Starts so far (1 = the first). */
  starts = 0;

  constructor(
    readonly name: 'server' | 'agent',
    private readonly o: ChildOptions,
  ) {}

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  async start(): Promise<void> {
    this.restartTimer = undefined;
    let command: { args: string[]; env?: Record<string, string> };
    try {
      command = await this.o.command();
    } catch (err) {
      this.exitedUnexpectedly(`could not be started: ${errorMessage(err)}`);
      return;
    }
    if (this.stopping) return;
    const self = selfCommand();
    const proc = spawn(self.execPath, [...self.prefix, ...command.args], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Its own process group: a Ctrl-C in the terminal reaches the supervisor only, which stops the
      // children in order. A child whose supervisor is gone stops by itself (see shutdown.ts).
      detached: true,
      env: { ...process.env, ...command.env, [SUPERVISED_ENV]: '1', [LOG_CHILD_ENV]: this.name },
    });
    this.proc = proc;
    this.starts++;
    proc.on('message', (raw) => this.onRaw(raw));
    this.exited = new Promise<void>((resolve) => {
      proc.once('exit', (code, signal) => {
        this.proc = undefined;
        for (const p of this.pending.values()) p.reject(new Error(`the ${this.name} exited (${describeExit(code, signal)})`));
        this.pending.clear();
        this.o.log.info({ child: this.name, childPid: proc.pid, code, signal }, `the ${this.name} exited`);
        if (!this.stopping) this.exitedUnexpectedly(describeExit(code, signal));
        resolve();
      });
    });
    proc.on('error', (err) => this.o.log.error({ child: this.name, err: errorMessage(err) }, `cannot run the ${this.name}`));
    this.o.log.info({ child: this.name, childPid: proc.pid, start: this.starts }, `started the ${this.name}`);
  }

  private onRaw(raw: unknown): void {
    const r = ChildMessage.safeParse(raw);
    if (!r.success) {
      this.o.log.warn({ child: this.name }, 'ignoring an invalid message from a child');
      return;
    }
    const msg = r.data;
    if (msg.type === 'registration-token' || msg.type === 'registration-token-error') {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === 'registration-token') p?.resolve(msg.token);
      else p?.reject(new Error(msg.message));
      return;
    }
    if (msg.type === 'server-ready' || msg.type === 'agent-ready') this.everReady = true;
    this.o.onMessage(msg);
  }

  private exitedUnexpectedly(why: string): void {
    if (this.stopping) return;
    if (!this.everReady) {
      this.o.onGiveUp(`the ${this.name} stopped before it was ready (${why}); its log lines above say why`);
      return;
    }
    const now = Date.now();
    const p = this.o.policy;
    this.recentExits = this.recentExits.filter((t) => now - t < p.rapidWindowMs);
    this.recentExits.push(now);
    const n = this.recentExits.length;
    if (n >= p.maxRapidExits) {
      this.o.onGiveUp(
        `the ${this.name} exited ${n} times within ${Math.round(p.rapidWindowMs / 1000)} s (last: ${why}); giving up — its log lines above say why`,
      );
      return;
    }
    const delayMs = Math.min(p.initialDelayMs * 2 ** (n - 1), p.maxDelayMs);
    this.o.log.warn({ child: this.name, reason: why, restartInMs: delayMs, recentExits: n }, `the ${this.name} exited unexpectedly; restarting it`);
    this.restartTimer = setTimeout(() => void this.start(), delayMs);
  }

  /** Asks the server child for a registration token (the server creates it in its own database). */
  requestToken(timeoutMs = 10_000): Promise<string> {
    const proc = this.proc;
    if (!proc?.connected) return Promise.reject(new Error(`the ${this.name} is not running`));
    const id = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the ${this.name} did not answer a registration token request within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const msg: SupervisorMessage = { type: 'registration-token-request', id };
      proc.send(msg);
    });
  }

  /** SIGTERM, then SIGKILL after the policy's timeout. Resolves true when it had to kill. */
  async stop(): Promise<boolean> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const proc = this.proc;
    if (!proc) return false;
    proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.o.policy.stopTimeoutMs))),
    ]);
    clearTimeout(timer);
    if (!timedOut) return false;
    this.o.log.warn({ child: this.name, childPid: proc.pid, timeoutMs: this.o.policy.stopTimeoutMs }, `the ${this.name} did not stop in time; killing it`);
    proc.kill('SIGKILL');
    await this.exited;
    return true;
  }

  /** SIGKILL at once (a second Ctrl-C). */
  kill(): void {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.proc?.kill('SIGKILL');
  }
}
