// Observed container state, apart from the spec.
//
// What agents report (state, health state, exit code, start count, message, docker id) is written to
// the `container_status` table, like host status: no revision, no change for any agent. Only the facts
// other hosts need reach the revisioned container document — whether it is serving (src/model/liveness.ts)
// and its health state — and only when they change: a report marks the row `pending` when its facts differ
// from the document's, and the publisher writes every pending container's document in one transaction
// per coalescing window. A container that goes running → exited → running within the window publishes
// nothing; many reports publish at most one revision per environment per window.
//
// The API shows a container with its status merged in (`containerView`), so GET /v1/containers keeps
// showing the observed state.
import type { Store, Tx } from '../db/store.js';
import { nowIso } from '../db/store.js';
import type { Container } from '../../model/resources.js';
import type { ContainerReport } from '../../model/reports.js';
import { isServing } from '../../model/liveness.js';
import { removeContainerRecord } from './deploy.js';

export interface ContainerStatus {
  containerId: string;
  envId: string;
  state: string;
  healthState: string | null;
  exitCode: number | null;
  externalId: string | null;
  startCount: number;
  message: string | null;
  updated: string;
  pending: boolean;
}

interface Row {
  container_id: string;
  env_id: string;
  state: string;
  health_state: string | null;
  exit_code: number | null;
  external_id: string | null;
  start_count: number;
  message: string | null;
  updated: string;
  pending: number;
}

const fromRow = (r: Row): ContainerStatus => ({
  containerId: r.container_id,
  envId: r.env_id,
  state: r.state,
  healthState: r.health_state,
  exitCode: r.exit_code,
  externalId: r.external_id,
  startCount: r.start_count,
  message: r.message,
  updated: r.updated,
  pending: r.pending === 1,
});

export function getStatus(store: Store, containerId: string): ContainerStatus | undefined {
  const row = store.statement('status:get', () => 'SELECT * FROM container_status WHERE container_id = ?').get(containerId) as
    | Row
    | undefined;
  return row ? fromRow(row) : undefined;
}

/** Every status row of an environment (or of all), by container id. */
export function statusMap(store: Store, envId?: string): Map<string, ContainerStatus> {
  const rows = (
    envId === undefined
      ? store.statement('status:all', () => 'SELECT * FROM container_status').all()
      : store.statement('status:env', () => 'SELECT * FROM container_status WHERE env_id = ?').all(envId)
  ) as Row[];
  return new Map(rows.map((r) => [r.container_id, fromRow(r)]));
}

function putStatus(store: Store, s: ContainerStatus): void {
  store
    .statement(
      'status:put',
      () =>
        'INSERT INTO container_status (container_id, env_id, state, health_state, exit_code, external_id, start_count, message, updated, pending) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(container_id) DO UPDATE SET env_id = excluded.env_id, state = excluded.state, ' +
        'health_state = excluded.health_state, exit_code = excluded.exit_code, external_id = excluded.external_id, ' +
        'start_count = excluded.start_count, message = excluded.message, updated = excluded.updated, pending = excluded.pending',
    )
    .run(s.containerId, s.envId, s.state, s.healthState, s.exitCode, s.externalId, s.startCount, s.message, s.updated, s.pending ? 1 : 0);
}

/** The status a container has before any report: what its document says. */
function statusFromDoc(c: Container): ContainerStatus {
  return {
    containerId: c.id,
    envId: c.environmentId,
    state: c.state,
    healthState: c.healthState,
    exitCode: c.exitCode,
    externalId: c.externalId,
    startCount: c.startCount,
    message: c.transitioningMessage ?? null,
    updated: c.created,
    pending: false,
  };
}

/** Whether the service of `c` has a health check (its containers are serving only when healthy). */
export function isChecked(store: Store, c: Container): boolean {
  if (!c.serviceId) return false;
  return store.get('service', c.serviceId)?.healthCheck !== undefined;
}

/** Whether the document's published facts differ from the observed ones. */
function differs(c: Container, s: ContainerStatus, checked: boolean): boolean {
  return isServing(c, checked) !== isServing(s, checked) || c.healthState !== s.healthState;
}

/** The container with its observed status merged in: what the API shows and what a publish writes. */
export function containerView(c: Container, s: ContainerStatus | undefined): Container {
  if (!s) return c;
  const { transitioningMessage: _m, ...rest } = c;
  return {
    ...rest,
    state: s.state,
    healthState: s.healthState,
    exitCode: s.exitCode,
    externalId: s.externalId,
    startCount: s.startCount,
    ...(s.message !== null ? { transitioningMessage: s.message } : {}),
  };
}

export function containerWithStatus(store: Store, c: Container): Container {
  return containerView(c, getStatus(store, c.id));
}

export function containersWithStatus(store: Store, list: Container[], envId?: string): Container[] {
  if (list.length === 0) return list;
  // One query for the lot (a listing of thousands must not be thousands of lookups).
  const m = list.length === 1 ? null : statusMap(store, envId);
  return list.map((c) => containerView(c, m ? m.get(c.id) : getStatus(store, c.id)));
}

/** A container whose health state just became `unhealthy` (for the service's health strategy). */
export interface HealthTransition {
  container: Container;
  from: string | null;
  to: string | null;
}

export interface ReportOutcome {
  /** Status rows that changed. */
  changed: number;
  /** Rows whose published facts now differ from their documents (the publisher has work). */
  pending: number;
  /** Health-state transitions, in report order. */
  health: HealthTransition[];
}

/**
 * Writes what an agent observed, inside the caller's transaction. Only containers on the reporting host
 * are touched; an adopted container reported removed loses its record (and its address). Writes no
 * document otherwise: the publisher does, for the facts other hosts need.
 */
export function recordReports(tx: Tx, hostId: string, reports: ContainerReport[]): ReportOutcome {
  const store = tx.store;
  const out: ReportOutcome = { changed: 0, pending: 0, health: [] };
  const now = nowIso();
  for (const r of reports) {
    const c = store.get('container', r.id);
    if (!c || c.hostId !== hostId) continue;
    if (r.state === 'removed' && c.adopted) {
      removeContainerRecord(tx, null, c);
      out.changed++;
      continue;
    }
    const existing = getStatus(store, c.id);
    const prev = existing ?? statusFromDoc(c);
    const next: ContainerStatus = {
      ...prev,
      state: r.state,
      ...(r.healthState !== undefined ? { healthState: r.healthState } : {}),
      ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
      ...(r.externalId !== undefined ? { externalId: r.externalId } : {}),
      // Monotonic per record: an agent restarted from an older baseline never counts backwards.
      ...(r.startCount !== undefined ? { startCount: Math.max(prev.startCount, r.startCount) } : {}),
      ...(r.message !== undefined ? { message: r.message } : {}),
    };
    next.pending = differs(c, next, isChecked(store, c));
    const same =
      next.state === prev.state &&
      next.healthState === prev.healthState &&
      next.exitCode === prev.exitCode &&
      next.externalId === prev.externalId &&
      next.startCount === prev.startCount &&
      next.message === prev.message &&
      next.pending === prev.pending &&
      existing !== undefined;
    if (same) continue;
    next.updated = now;
    putStatus(store, next);
    out.changed++;
    if (next.pending) out.pending++;
    if (next.healthState !== prev.healthState) out.health.push({ container: c, from: prev.healthState, to: next.healthState });
  }
  return out;
}

/**
 * Publishes pending rows into their documents (state, health state, and the counters that ride along)
 * inside the caller's transaction: one revision per environment for all of them.
 */
export function publishPending(tx: Tx): number {
  const store = tx.store;
  const rows = store.statement('status:pending', () => 'SELECT * FROM container_status WHERE pending = 1').all() as Row[];
  let published = 0;
  for (const row of rows) {
    const s = fromRow(row);
    const c = store.get('container', s.containerId);
    if (c && differs(c, s, isChecked(store, c))) {
      tx.put('container', containerView(c, s));
      published++;
    }
    store.statement('status:clear', () => 'UPDATE container_status SET pending = 0 WHERE container_id = ?').run(s.containerId);
  }
  return published;
}

export interface StatusPublisherOptions {
  /** How long reports are gathered before their facts are published (ms); 0 publishes in the report's transaction. */
  coalesceMs: number;
  /** Runs a write when no other writer runs (the API's one-writer queue). */
  exclusive?: <T>(fn: () => Promise<T>) => Promise<T>;
  onError?: (err: unknown) => void;
}

/** Publishes pending status facts at most once per window. */
export class StatusPublisher {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly store: Store,
    readonly opts: StatusPublisherOptions,
  ) {
    store.once('close', () => this.close());
    // Rows left pending by a previous run are published after a restart.
    const any = store.db.prepare('SELECT 1 FROM container_status WHERE pending = 1 LIMIT 1').get();
    if (any) this.schedule();
  }

  /** Asks for a publish at the end of the current window. */
  schedule(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const run = () => Promise.resolve(this.flush());
      const p = this.opts.exclusive ? this.opts.exclusive(run) : run();
      p.catch((err: unknown) => this.opts.onError?.(err));
    }, this.opts.coalesceMs);
    this.timer.unref();
  }

  /** Publishes now (one transaction); returns how many documents were written. */
  flush(): number {
    if (this.closed || !this.store.db.open) return 0;
    return this.store.tx((tx) => publishPending(tx));
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
