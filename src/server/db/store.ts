// The control plane's storage: one SQLite file, resources as JSON documents with indexed columns,
// and a per-environment revision with a change log. Every mutation runs inside `tx()`: all its writes
// and the revision bump commit together or not at all, and watchers are told only after the commit.
import Database from 'better-sqlite3';
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { migrate } from './migrations.js';
import { Environment, STATE_SCHEMAS, type StateKind, type StateTypes } from '../../model/resources.js';
import { NotFoundError } from '../../common/errors.js';

export type StoredKind = StateKind | 'environment';
export interface StoredTypes extends StateTypes {
  environment: Environment;
}

interface TableDef {
  table: string;
  /** Extra indexed columns, derived from the document. */
  columns: Record<string, (doc: Record<string, unknown>) => unknown>;
}

const TABLES: { [K in StoredKind]: TableDef } = {
  environment: { table: 'environments', columns: { name: (d) => d.name } },
  host: { table: 'hosts', columns: { env_id: (d) => d.environmentId, uuid: (d) => d.uuid } },
  stack: { table: 'stacks', columns: { env_id: (d) => d.environmentId, name: (d) => d.name } },
  service: {
    table: 'services',
    columns: { env_id: (d) => d.environmentId, stack_id: (d) => d.stackId, name: (d) => d.name },
  },
  container: {
    table: 'containers',
    columns: { env_id: (d) => d.environmentId, service_id: (d) => d.serviceId, host_id: (d) => d.hostId },
  },
  serviceLink: {
    table: 'service_links',
    columns: {
      env_id: (d) => d.environmentId,
      service_id: (d) => d.serviceId,
      consumed_service_id: (d) => d.consumedServiceId,
    },
  },
  containerLink: {
    table: 'container_links',
    columns: { env_id: (d) => d.environmentId, container_id: (d) => d.containerId },
  },
  certificate: { table: 'certificates', columns: { env_id: (d) => d.environmentId, name: (d) => d.name } },
};

const ID_PREFIX: { [K in StoredKind]: string } = {
  environment: '1a',
  host: '1h',
  stack: '1st',
  service: '1s',
  container: '1i',
  serviceLink: '1sl',
  containerLink: '1cl',
  certificate: '1cert',
};

/** How many revisions of change log each environment keeps; older watchers get a snapshot. */
export const CHANGE_LOG_RETENTION = 5000;

export interface CommitEvent {
  envId: string;
  revision: number;
}

/** Handle for writes inside one transaction. */
export class Tx {
  private readonly touched = new Map<string, Set<string>>(); // envId -> "kind\0id"

  constructor(readonly store: Store) {}

  get<K extends StoredKind>(kind: K, id: string): StoredTypes[K] | undefined {
    return this.store.get(kind, id);
  }

  put<K extends StoredKind>(kind: K, doc: StoredTypes[K]): StoredTypes[K] {
    const def = TABLES[kind];
    const parsed = (kind === 'environment' ? Environment : STATE_SCHEMAS[kind as StateKind]).parse(doc) as StoredTypes[K];
    const rec = parsed as unknown as Record<string, unknown>;
    const cols = Object.keys(def.columns);
    const values = cols.map((c) => (def.columns[c] as (d: Record<string, unknown>) => unknown)(rec));
    this.store.statement(`upsert:${kind}`, () =>
      `INSERT INTO ${def.table} (id, ${cols.join(', ')}${cols.length ? ', ' : ''}data) ` +
      `VALUES (?, ${cols.map(() => '?').join(', ')}${cols.length ? ', ' : ''}?) ` +
      `ON CONFLICT(id) DO UPDATE SET ${[...cols, 'data'].map((c) => `${c} = excluded.${c}`).join(', ')}`,
    ).run(rec.id, ...values, JSON.stringify(parsed));
    this.touch(kind === 'environment' ? (rec.id as string) : (rec.environmentId as string), kind, rec.id as string);
    return parsed;
  }

  remove(kind: StoredKind, id: string): boolean {
    const doc = this.store.get(kind, id) as { environmentId?: string; id: string } | undefined;
    if (!doc) return false;
    this.store.statement(`delete:${kind}`, () => `DELETE FROM ${TABLES[kind].table} WHERE id = ?`).run(id);
    this.touch(kind === 'environment' ? id : (doc.environmentId as string), kind, id);
    return true;
  }

  /** Records a change without a write (e.g. a resource whose derived view changed). */
  touch(envId: string, kind: StoredKind, id: string): void {
    let s = this.touched.get(envId);
    if (!s) this.touched.set(envId, (s = new Set()));
    s.add(`${kind}\0${id}`);
  }

  newId(kind: StoredKind): string {
    return this.store.nextId(ID_PREFIX[kind]);
  }

  /** Bumps each touched environment's revision once and logs the changes. Called by Store.tx. */
  finish(): CommitEvent[] {
    const events: CommitEvent[] = [];
    const db = this.store.db;
    for (const [envId, set] of this.touched) {
      const row = db.prepare('SELECT revision FROM environments WHERE id = ?').get(envId) as
        | { revision: number }
        | undefined;
      if (!row) continue; // the environment itself was removed
      const revision = row.revision + 1;
      db.prepare('UPDATE environments SET revision = ? WHERE id = ?').run(revision, envId);
      const ins = db.prepare('INSERT INTO changes (env_id, revision, kind, id) VALUES (?, ?, ?, ?)');
      for (const key of set) {
        const [kind, id] = key.split('\0') as [string, string];
        ins.run(envId, revision, kind, id);
      }
      if (revision % 100 === 0) {
        db.prepare('DELETE FROM changes WHERE env_id = ? AND revision <= ?').run(envId, revision - CHANGE_LOG_RETENTION);
      }
      events.push({ envId, revision });
    }
    return events;
  }
}

export class Store extends EventEmitter<{ commit: [CommitEvent]; close: [] }> {
  readonly db: Database.Database;
  readonly schemaVersion: number;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(readonly path: string) {
    super();
    this.setMaxListeners(0);
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.schemaVersion = migrate(this.db);
  }

  static openDir(dir: string): Store {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return new Store(join(dir, 'drover.db'));
  }

  close(): void {
    if (!this.db.open) return;
    this.emit('close');
    this.db.close();
  }

  /** Runs `fn` in one IMMEDIATE transaction; on success bumps revisions and notifies watchers. */
  tx<T>(fn: (tx: Tx) => T): T {
    const tx = new Tx(this);
    let events: CommitEvent[] = [];
    const result = this.db
      .transaction(() => {
        const r = fn(tx);
        events = tx.finish();
        return r;
      })
      .immediate();
    for (const e of events) this.emit('commit', e);
    return result;
  }

  /** A prepared statement, compiled once per key (the hot paths run the same few statements). */
  statement(key: string, sql: () => string): Database.Statement {
    let st = this.statements.get(key);
    if (!st) this.statements.set(key, (st = this.db.prepare(sql())));
    return st;
  }

  get<K extends StoredKind>(kind: K, id: string): StoredTypes[K] | undefined {
    const row = this.statement(`get:${kind}`, () => `SELECT data FROM ${TABLES[kind].table} WHERE id = ?`).get(id) as
      | { data: string }
      | undefined;
    return row ? (JSON.parse(row.data) as StoredTypes[K]) : undefined;
  }

  mustGet<K extends StoredKind>(kind: K, id: string): StoredTypes[K] {
    const doc = this.get(kind, id);
    if (!doc) throw new NotFoundError(kind, id);
    return doc;
  }

  /** Lists documents of a kind, optionally by indexed columns (e.g. `{ env_id: '1a1' }`). */
  list<K extends StoredKind>(kind: K, where: Record<string, string | null> = {}): StoredTypes[K][] {
    const keys = Object.keys(where);
    const clause = keys.length
      ? ' WHERE ' + keys.map((k) => (where[k] === null ? `${k} IS NULL` : `${k} = ?`)).join(' AND ')
      : '';
    const params = keys.map((k) => where[k]).filter((v) => v !== null);
    const sql = `SELECT data FROM ${TABLES[kind].table}${clause} ORDER BY rowid`;
    const rows = this.statement(`list:${sql}`, () => sql).all(...params) as {
      data: string;
    }[];
    return rows.map((r) => JSON.parse(r.data) as StoredTypes[K]);
  }

  revision(envId: string): number {
    const row = this.db.prepare('SELECT revision FROM environments WHERE id = ?').get(envId) as
      | { revision: number }
      | undefined;
    if (!row) throw new NotFoundError('environment', envId);
    return row.revision;
  }

  /** The oldest revision after which the change log is complete. */
  oldestRetained(envId: string): number {
    const row = this.db.prepare('SELECT MIN(revision) AS r FROM changes WHERE env_id = ?').get(envId) as {
      r: number | null;
    };
    return row.r === null ? this.revision(envId) : row.r - 1;
  }

  /** Distinct (kind, id) changed after `after`, in first-change order. */
  changedSince(envId: string, after: number): { kind: StoredKind; id: string }[] {
    return this.db
      .prepare(
        'SELECT kind, id, MIN(revision) AS r FROM changes WHERE env_id = ? AND revision > ? GROUP BY kind, id ORDER BY r',
      )
      .all(envId, after) as { kind: StoredKind; id: string }[];
  }

  nextId(prefix: string): string {
    const row = this.statement(
      'nextId',
      () => 'INSERT INTO id_sequence (name, value) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value',
    ).get(prefix) as { value: number };
    return `${prefix}${row.value}`;
  }

  getSetting(key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setSetting(key: string, value: string): void {
    this.db
      .prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value')
      .run(key, value);
  }
}

export function newUuid(): string {
  return randomUUID();
}

export function nowIso(): string {
  return new Date().toISOString();
}
