// Schema migrations, applied in order inside one transaction each; `PRAGMA user_version` records the
// last one applied. Resources keep their full wire form in a JSON `data` column; the columns beside it
// exist for lookups, uniqueness and foreign keys.
import type Database from 'better-sqlite3';

const MIGRATIONS: string[] = [
  `
  CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE id_sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL);

  CREATE TABLE environments (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, revision INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);

  CREATE TABLE hosts (
    id TEXT PRIMARY KEY, env_id TEXT NOT NULL REFERENCES environments(id),
    uuid TEXT NOT NULL UNIQUE, data TEXT NOT NULL);
  CREATE INDEX hosts_env ON hosts(env_id);
  CREATE TABLE host_status (
    host_id TEXT PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE, last_seen TEXT, applied TEXT NOT NULL DEFAULT '{}');

  CREATE TABLE stacks (
    id TEXT PRIMARY KEY, env_id TEXT NOT NULL REFERENCES environments(id), name TEXT NOT NULL, data TEXT NOT NULL,
    UNIQUE (env_id, name));

  CREATE TABLE services (
    id TEXT PRIMARY KEY, env_id TEXT NOT NULL REFERENCES environments(id),
    stack_id TEXT NOT NULL REFERENCES stacks(id), name TEXT NOT NULL, data TEXT NOT NULL,
    UNIQUE (stack_id, name));
  CREATE INDEX services_env ON services(env_id);

  CREATE TABLE containers (
    id TEXT PRIMARY KEY, env_id TEXT NOT NULL REFERENCES environments(id),
    service_id TEXT REFERENCES services(id), host_id TEXT REFERENCES hosts(id), data TEXT NOT NULL);
  CREATE INDEX containers_env ON containers(env_id);
  CREATE INDEX containers_service ON containers(service_id);
  CREATE INDEX containers_host ON containers(host_id);

  CREATE TABLE service_links (
    id TEXT PRIMARY KEY, env_id TEXT NOT NULL REFERENCES environments(id),
    service_id TEXT NOT NULL REFERENCES services(id), consumed_service_id TEXT NOT NULL REFERENCES services(id),
    data TEXT NOT NULL, UNIQUE (service_id, consumed_service_id));
  CREATE INDEX service_links_env ON service_links(env_id);

  CREATE TABLE container_links (
    id TEXT PRIMARY KEY, env_id TEXT NOT NULL REFERENCES environments(id),
    container_id TEXT NOT NULL REFERENCES containers(id), data TEXT NOT NULL);
  CREATE INDEX container_links_env ON container_links(env_id);

  CREATE TABLE certificates (
    id TEXT PRIMARY KEY, env_id TEXT NOT NULL REFERENCES environments(id), name TEXT NOT NULL, data TEXT NOT NULL,
    UNIQUE (env_id, name));

  CREATE TABLE registration_tokens (
    id TEXT PRIMARY KEY, env_id TEXT NOT NULL REFERENCES environments(id), access_key TEXT NOT NULL UNIQUE,
    issued_at INTEGER NOT NULL, state TEXT NOT NULL, created TEXT NOT NULL);

  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    env_id TEXT REFERENCES environments(id), host_id TEXT REFERENCES hosts(id) ON DELETE CASCADE,
    access_key TEXT NOT NULL UNIQUE, secret_hash TEXT NOT NULL, state TEXT NOT NULL, created TEXT NOT NULL);

  -- One address per owner (a service slot or a standalone container), never two owners per address.
  CREATE TABLE ip_allocations (
    env_id TEXT NOT NULL REFERENCES environments(id), ip TEXT NOT NULL, owner TEXT NOT NULL,
    PRIMARY KEY (env_id, ip), UNIQUE (env_id, owner));

  -- What changed at which revision; the watch endpoint reads the current form of each resource.
  CREATE TABLE changes (
    env_id TEXT NOT NULL, revision INTEGER NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL);
  CREATE INDEX changes_env_rev ON changes(env_id, revision);
  `,
  // Removing a service looks up the links that consume it: without this index each removal scanned every
  // link of the environment (removing a stack of N linked services was O(N²)).
  `
  CREATE INDEX service_links_consumed ON service_links(consumed_service_id);
  `,
  // Observed container state, apart from the revisioned documents (like host_status): what the agents
  // report goes here, with no revision; `pending` marks rows whose published facts (serving, health
  // state) may differ from the document's, for the status publisher (src/server/domain/status.ts).
  `
  CREATE TABLE container_status (
    container_id TEXT PRIMARY KEY REFERENCES containers(id) ON DELETE CASCADE,
    env_id TEXT NOT NULL, state TEXT NOT NULL, health_state TEXT, exit_code INTEGER, external_id TEXT,
    start_count INTEGER NOT NULL DEFAULT 0, message TEXT, updated TEXT NOT NULL, pending INTEGER NOT NULL DEFAULT 0);
  CREATE INDEX container_status_env ON container_status(env_id);
  CREATE INDEX container_status_pending ON container_status(pending) WHERE pending = 1;
  `,
  // The managed network of a host as its agent reports it (peers reachable, backend, MTU): observed
  // state beside last_seen and applied, never revisioned.
  `
  ALTER TABLE host_status ADD COLUMN network TEXT;
  `,
  // Where the host's agent serves container logs, shells and stats to the control plane (its port).
  `
  ALTER TABLE host_status ADD COLUMN access_port INTEGER;
  `,
];

export function migrate(db: Database.Database): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(
      `the database schema (version ${current}) is newer than this drover (version ${MIGRATIONS.length}); upgrade drover`,
    );
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    const sql = MIGRATIONS[v] as string;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
  return MIGRATIONS.length;
}
