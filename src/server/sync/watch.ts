// The watch side of sync: what changed in an environment after a revision, and waiting for it.
//
// Agents ask `after=<their revision>`. If the change log still covers that revision they get one entry
// per changed resource in its current form (or a removal); otherwise, or with `after=0`, a snapshot.
// Waiting costs nothing: a request parks on the environment's commit event. Responses are cached per
// (environment, after, revision) so that many agents at the same revision share one computation.
import type { Store, StoredKind } from '../db/store.js';
import type { Change, Snapshot, WatchResponse } from '../../model/state.js';
import { COLLECTION_OF } from '../../model/state.js';
import { STATE_KINDS, type StateKind } from '../../model/resources.js';
import { metadataTokenKey } from '../auth/metadata-key.js';

export class WatchHub {
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly cache = new Map<string, string>();

  constructor(private readonly store: Store) {
    store.on('commit', ({ envId }) => {
      const set = this.waiters.get(envId);
      if (!set) return;
      this.waiters.delete(envId);
      for (const wake of set) wake();
    });
  }

  /** Resolves when the environment's revision is past `after`, at `timeoutMs`, or on abort. */
  async waitPast(envId: string, after: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.store.revision(envId) !== after || timeoutMs <= 0 || signal?.aborted) return;
    await new Promise<void>((resolve) => {
      let set = this.waiters.get(envId);
      if (!set) this.waiters.set(envId, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waiters.get(envId)?.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  waiting(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }

  /** The JSON text of the watch response (cached: identical asks share it). */
  responseJson(envId: string, after: number): string {
    const revision = this.store.revision(envId);
    const key = `${envId}:${after}:${revision}`;
    let json = this.cache.get(key);
    if (json === undefined) {
      json = JSON.stringify(this.build(envId, after, revision));
      if (this.cache.size > 256) this.cache.clear();
      this.cache.set(key, json);
    }
    return json;
  }

  build(envId: string, after: number, revision: number): WatchResponse {
    const env = this.store.mustGet('environment', envId);
    if (after <= 0 || after > revision || after < this.store.oldestRetained(envId)) {
      return { revision, snapshot: snapshot(this.store, envId), changes: [], metadataTokenKey: metadataTokenKey(this.store, env.uuid) };
    }
    const changes: Change[] = [];
    let envChanged = false;
    for (const { kind, id } of this.store.changedSince(envId, after)) {
      if (kind === 'environment') {
        envChanged = true;
        continue;
      }
      const data = this.store.get(kind as StoredKind, id);
      changes.push(data ? { op: 'upsert', kind: kind as StateKind, id, data } : { op: 'remove', kind: kind as StateKind, id });
    }
    return { revision, changes, ...(envChanged ? { environment: env } : {}), metadataTokenKey: metadataTokenKey(this.store, env.uuid) };
  }
}

export function snapshot(store: Store, envId: string): Snapshot {
  const environment = store.mustGet('environment', envId);
  const resources = Object.fromEntries(
    STATE_KINDS.map((k) => [COLLECTION_OF[k], store.list(k, { env_id: envId })]),
  ) as Snapshot['resources'];
  return { environment, resources };
}
