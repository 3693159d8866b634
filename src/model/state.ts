// An environment's state as the agents hold it, and the sync messages that keep it current.
import { z } from 'zod';
import {
  Environment,
  STATE_KINDS,
  STATE_SCHEMAS,
  type StateKind,
  type StateTypes,
} from './resources.js';

/** The environment state an agent holds: every resource of the environment, by kind and id. */
export interface EnvState {
  revision: number;
  environment: Environment;
  hosts: Map<string, StateTypes['host']>;
  stacks: Map<string, StateTypes['stack']>;
  services: Map<string, StateTypes['service']>;
  containers: Map<string, StateTypes['container']>;
  serviceLinks: Map<string, StateTypes['serviceLink']>;
  containerLinks: Map<string, StateTypes['containerLink']>;
  certificates: Map<string, StateTypes['certificate']>;
}

export const COLLECTION_OF: { [K in StateKind]: keyof EnvState & `${string}s` } = {
  host: 'hosts',
  stack: 'stacks',
  service: 'services',
  container: 'containers',
  serviceLink: 'serviceLinks',
  containerLink: 'containerLinks',
  certificate: 'certificates',
};

export const StateKindSchema = z.enum(STATE_KINDS);

/** One change: the resource's current form (`upsert`) or its removal. */
export const Change = z.discriminatedUnion('op', [
  z.object({ op: z.literal('upsert'), kind: StateKindSchema, id: z.string(), data: z.unknown() }),
  z.object({ op: z.literal('remove'), kind: StateKindSchema, id: z.string() }),
]);
export type Change = z.infer<typeof Change>;

/** A full copy of the environment, sent when an agent has nothing or is too far behind. */
export const Snapshot = z.object({
  environment: Environment,
  resources: z.object(
    Object.fromEntries(STATE_KINDS.map((k) => [COLLECTION_OF[k], z.array(STATE_SCHEMAS[k])])) as {
      [K in StateKind as (typeof COLLECTION_OF)[K]]: z.ZodArray<(typeof STATE_SCHEMAS)[K]>;
    },
  ),
});
export type Snapshot = z.infer<typeof Snapshot>;

/** The answer of the watch endpoint. */
export const WatchResponse = z.object({
  revision: z.number().int().min(0),
  /** Present when the agent must replace its state (first sync, or its revision is no longer in the log). */
  snapshot: Snapshot.optional(),
  /** Changes after the asked revision, one per resource (the latest form), when no snapshot is sent. */
  changes: z.array(Change).default([]),
  /** The environment record changed (network settings, name); included whenever it did. */
  environment: Environment.optional(),
  /**
   * Key of the metadata service tokens (see src/server/auth/metadata-key.ts): sent to the environment's
   * agents only, in every response; never part of the state the metadata tree is built from.
   */
  metadataTokenKey: z.string().min(32).optional(),
});
export type WatchResponse = z.infer<typeof WatchResponse>;

export function emptyState(environment: Environment): EnvState {
  return {
    revision: 0,
    environment,
    hosts: new Map(),
    stacks: new Map(),
    services: new Map(),
    containers: new Map(),
    serviceLinks: new Map(),
    containerLinks: new Map(),
    certificates: new Map(),
  };
}

/** Builds an EnvState from a snapshot (already validated). */
export function stateFromSnapshot(revision: number, snap: Snapshot): EnvState {
  const st = emptyState(snap.environment);
  st.revision = revision;
  for (const kind of STATE_KINDS) {
    const coll = st[COLLECTION_OF[kind]] as Map<string, { id: string }>;
    for (const r of snap.resources[COLLECTION_OF[kind]] as { id: string }[]) coll.set(r.id, r);
  }
  return st;
}

/** Serialises an EnvState to a snapshot (for persistence). */
export function snapshotOf(st: EnvState): Snapshot {
  const resources = Object.fromEntries(
    STATE_KINDS.map((k) => [COLLECTION_OF[k], [...(st[COLLECTION_OF[k]] as Map<string, unknown>).values()]]),
  ) as Snapshot['resources'];
  return { environment: st.environment, resources };
}

/** One resource a change touched (what an incremental renderer needs to know). */
export interface Touched {
  kind: StateKind;
  id: string;
  op: 'upsert' | 'remove';
}

/**
 * What changed between the state a controller last saw and the current one: `full` when the state was
 * replaced (snapshot, first load) and everything must be rendered again; otherwise the touched resources
 * (each at most once, latest op) and whether the environment record changed.
 */
export interface StateDelta {
  revision: number;
  full: boolean;
  touched: readonly Touched[];
  environmentChanged: boolean;
}

/** A delta that says "render everything" (first state, snapshot, resync). */
export function fullDelta(revision: number): StateDelta {
  return { revision, full: true, touched: [], environmentChanged: true };
}

/** Folds a newer delta into an older one not yet consumed (a controller that was busy or failing). */
export function mergeDeltas(older: StateDelta, newer: StateDelta): StateDelta {
  if (older.full || newer.full) return fullDelta(newer.revision);
  const byKey = new Map<string, Touched>();
  for (const t of older.touched) byKey.set(`${t.kind}/${t.id}`, t);
  for (const t of newer.touched) byKey.set(`${t.kind}/${t.id}`, t);
  return {
    revision: newer.revision,
    full: false,
    touched: [...byKey.values()],
    environmentChanged: older.environmentChanged || newer.environmentChanged,
  };
}

/**
 * Applies validated changes to a state in place and returns what they touched. Each upsert is
 * validated with the kind's schema; an invalid one throws before anything is changed (the caller keeps
 * its previous state).
 */
export function applyChanges(st: EnvState, revision: number, changes: Change[], environment?: Environment): StateDelta {
  const parsed = changes.map((c) =>
    c.op === 'upsert' ? { ...c, data: STATE_SCHEMAS[c.kind].parse(c.data) as { id: string } } : c,
  );
  if (environment) st.environment = environment;
  const touched = new Map<string, Touched>();
  for (const c of parsed) {
    const coll = st[COLLECTION_OF[c.kind]] as Map<string, unknown>;
    if (c.op === 'upsert') coll.set(c.id, c.data);
    else coll.delete(c.id);
    touched.set(`${c.kind}/${c.id}`, { kind: c.kind, id: c.id, op: c.op });
  }
  st.revision = revision;
  return { revision, full: false, touched: [...touched.values()], environmentChanged: environment !== undefined };
}
