// The agent's persisted copy of its environment state: what it serves from when it restarts before the
// control plane answers. Persisted incrementally, so a change costs what it changed, not the environment:
//
//   state.json  a snapshot {format: 1, revision, snapshot} (the format agents before the log wrote:
//               an upgraded agent reads its old file as the snapshot), written atomically;
//   state.log   one JSON line per applied change set since that snapshot:
//               {"revision": N, "changes": [...], "environment"?: {...}}, appended and fsynced.
//
// Loading replays the log lines newer than the snapshot; it stops at the first line that does not parse
// (a torn last line after a crash: what is before it is a consistent earlier state; the control plane
// sends the rest) and then compacts. The log is compacted into a new snapshot when it grows past the
// snapshot's size (so writing stays O(change) amortised) and whenever a snapshot replaces the state.
import { open, readFile, rm, stat } from 'node:fs/promises';
import { z } from 'zod';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { Change, Snapshot, applyChanges, snapshotOf, stateFromSnapshot, type EnvState } from '../../model/state.js';
import { Environment } from '../../model/resources.js';

const StateFile = z.object({ format: z.literal(1), revision: z.number().int(), snapshot: Snapshot });
const LogLine = z.object({ revision: z.number().int(), changes: z.array(Change), environment: Environment.optional() });

/** A failed write of the persisted state (disk full, read-only, a directory in the way): the agent retries. */
export class PersistError extends Error {
  constructor(path: string, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException).code;
    super(`cannot persist the agent's state to ${path}${code ? ` (${code})` : ''}: ${(cause as Error).message ?? String(cause)}`, { cause });
    this.name = 'PersistError';
  }
}

export interface LoadedState {
  state: EnvState;
  /** Log lines replayed on top of the snapshot. */
  replayed: number;
  /** A line of the log did not parse (torn write): it and what follows were ignored. */
  torn: boolean;
}

export interface StateStoreOptions {
  /** Path of the snapshot (state.json); the log is beside it (state.log). */
  path: string;
  /** Compact once the log is larger than this many bytes or the snapshot, whichever is larger (default 64 KiB). */
  minCompactBytes?: number;
}

export class StateStore {
  readonly snapshotPath: string;
  readonly logPath: string;
  private logBytes = 0;
  private snapshotBytes = 0;
  private needsSnapshot = true;
  private readonly minCompactBytes: number;

  constructor(opts: StateStoreOptions) {
    this.snapshotPath = opts.path;
    this.logPath = opts.path.replace(/\.json$/, '') + '.log';
    this.minCompactBytes = opts.minCompactBytes ?? 64 * 1024;
  }

  /** Bytes of the log now (tests, metrics). */
  get logSize(): number {
    return this.logBytes;
  }

  /** Snapshot + log; undefined when nothing was persisted. Throws on an unreadable snapshot. */
  async load(): Promise<LoadedState | undefined> {
    let text: string;
    try {
      text = await readFile(this.snapshotPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const parsed = StateFile.parse(JSON.parse(text));
    this.snapshotBytes = Buffer.byteLength(text);
    const state = stateFromSnapshot(parsed.revision, parsed.snapshot);
    let replayed = 0;
    let torn = false;
    let log = '';
    try {
      log = await readFile(this.logPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let at = 0;
    while (at < log.length) {
      const nl = log.indexOf('\n', at);
      if (nl < 0) {
        torn = true; // no newline: the last write did not finish
        break;
      }
      const line = log.slice(at, nl);
      at = nl + 1;
      if (line === '') continue;
      let entry: z.infer<typeof LogLine>;
      try {
        entry = LogLine.parse(JSON.parse(line));
      } catch {
        torn = true;
        break;
      }
      if (entry.revision <= state.revision) continue; // already in the snapshot (a crash before the log was cut)
      applyChanges(state, entry.revision, entry.changes, entry.environment);
      replayed++;
    }
    this.logBytes = Buffer.byteLength(log);
    // A torn log gets no more appends behind its bad line: the next persist writes a snapshot.
    this.needsSnapshot = torn;
    return { state, replayed, torn };
  }

  /**
   * Persists a state reached by `changes` (appended to the log), or, with `replaced` (a snapshot from the
   * control plane, or no snapshot on disk yet), a full snapshot. Throws PersistError; the caller must
   * then not take the revision as persisted.
   */
  async persist(state: EnvState, step: { replaced: true } | { replaced: false; changes: Change[]; environment?: Environment | undefined }): Promise<void> {
    try {
      if (step.replaced || this.needsSnapshot || this.logBytes > Math.max(this.minCompactBytes, this.snapshotBytes)) {
        await this.writeSnapshot(state);
        return;
      }
      const line =
        JSON.stringify({ revision: state.revision, changes: step.changes, ...(step.environment ? { environment: step.environment } : {}) }) + '\n';
      const fh = await open(this.logPath, 'a', 0o600);
      try {
        await fh.write(line);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      this.logBytes += Buffer.byteLength(line);
    } catch (err) {
      if (err instanceof PersistError) throw err;
      // A partly written line may be on disk: it is after every whole one, and the next persist starts a snapshot.
      this.needsSnapshot = true;
      throw new PersistError(step.replaced ? this.snapshotPath : this.logPath, err);
    }
  }

  /** Writes a snapshot of `state` and empties the log (compaction). */
  async writeSnapshot(state: EnvState): Promise<void> {
    const text = JSON.stringify({ format: 1, revision: state.revision, snapshot: snapshotOf(state) });
    try {
      await writeFileAtomic(this.snapshotPath, text);
    } catch (err) {
      this.needsSnapshot = true;
      throw new PersistError(this.snapshotPath, err);
    }
    this.snapshotBytes = Buffer.byteLength(text);
    this.needsSnapshot = false;
    // The snapshot holds everything the log did; a log left behind by a crash here is skipped on load.
    try {
      await rm(this.logPath, { force: true });
      this.logBytes = 0;
    } catch (err) {
      this.needsSnapshot = true;
      throw new PersistError(this.logPath, err);
    }
  }

  /** Bytes on disk now (snapshot + log). */
  async diskBytes(): Promise<number> {
    let n = 0;
    for (const p of [this.snapshotPath, this.logPath]) n += await stat(p).then((s) => s.size, () => 0);
    return n;
  }
}

/** The persisted state at `path` (snapshot + log), for tools and tests. */
export async function loadState(path: string): Promise<EnvState | undefined> {
  return (await new StateStore({ path }).load())?.state;
}
