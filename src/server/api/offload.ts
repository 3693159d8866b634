// Large mutations off the event loop. A compose import of thousands of services, or a scale of a
// thousand containers, is seconds of synchronous work (YAML parsing alone is ~3 µs per node); run
// inline it would stall every request, `/v1/version` and the agents' watches included. Such jobs run
// in a worker thread with its own SQLite connection: the same domain functions, one transaction, and
// the main thread keeps answering (reads see the last commit, WAL mode). Small jobs run inline, where
// they cost less than a message to the worker.
//
// One writer at a time: every mutating request passes `exclusive()`, so a request never meets the
// worker's write lock (which would block the event loop in SQLite's busy wait); it waits its turn
// asynchronously instead.
import { Worker } from 'node:worker_threads';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Store } from '../db/store.js';
import { DroverError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { OFFLOAD_THRESHOLD, execute, jobSize, type Job, type JobResult, type WireError, type WorkerReply } from './offload-jobs.js';

/** An idle worker is stopped after this long (it is started again on the next large job). */
const IDLE_MS = 15_000;

/** An error raised in the worker, answered as the worker described it. */
class RemoteDroverError extends DroverError {
  constructor(private readonly json: Record<string, unknown>, status: number, code: string, message: string, fieldName?: string) {
    super(status, code, message, fieldName);
  }

  override toJSON(): Record<string, unknown> {
    return this.json;
  }
}

function revive(e: WireError): Error {
  if (e.kind === 'drover') return new RemoteDroverError(e.json, e.status, e.code, e.message, e.fieldName);
  const err = new Error(e.message);
  if (e.kind === 'sqlite') Object.assign(err, { code: e.code });
  if (e.stack) err.stack = e.stack;
  return err;
}

export class Offloader {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>();
  private idleTimer: NodeJS.Timeout | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private running = 0;

  constructor(
    private readonly store: Store,
    private readonly log?: Logger,
  ) {
    store.once('close', () => void this.stop());
  }

  /** Whether a job is running in the worker (the main thread must not write meanwhile). */
  get busy(): boolean {
    return this.running > 0;
  }

  /** Runs `fn` after every mutation admitted before it has finished (one writer at a time). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Runs a job: inline when small, else in the worker. Call inside `exclusive()`. */
  async run<J extends Job>(job: J): Promise<JobResult<J>> {
    const { size, spec } = jobSize(this.store, job);
    if (size <= OFFLOAD_THRESHOLD) return execute(this.store, job, spec);
    const reply = await this.send(job);
    for (const e of reply.events) this.store.emit('commit', e);
    if (!reply.ok) throw revive(reply.error);
    return reply.result as JobResult<J>;
  }

  private send(job: Job): Promise<WorkerReply> {
    const w = this.start();
    const id = this.nextId++;
    this.running++;
    w.ref();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    return new Promise<WorkerReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, job });
    }).finally(() => {
      this.running--;
      if (this.running === 0 && this.worker === w) {
        w.unref();
        this.idleTimer = setTimeout(() => void this.stop(), IDLE_MS);
        this.idleTimer.unref();
      }
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // The worker module next to this one, .ts when running from source (tsx), .js when built.
    const ext = extname(fileURLToPath(import.meta.url));
    const url = new URL(`./offload-worker${ext}`, import.meta.url);
    const workerData = { dbPath: this.store.path };
    // From source the worker needs tsx's loader registered in its own thread first.
    const w =
      ext === '.ts'
        ? new Worker(
            `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`,
            { eval: true, workerData },
          )
        : new Worker(url, { workerData });
    w.on('message', (m: WorkerReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      p.resolve(m);
    });
    const fail = (err: Error) => {
      if (this.worker === w) this.worker = undefined;
      this.log?.error({ err }, 'import worker failed');
      for (const p of this.pending.values()) p.reject(new Error(`the worker running the job failed: ${err.message}`));
      this.pending.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => {
      if (this.pending.size) fail(new Error(`worker exited with code ${code}`));
      if (this.worker === w) this.worker = undefined;
    });
    this.worker = w;
    return w;
  }

  async stop(): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}
