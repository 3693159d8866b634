// The agent's persisted copy of its environment state: what it serves from when it restarts before the
// control plane answers. Written atomically after every applied change; validated when read.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { Snapshot, snapshotOf, stateFromSnapshot, type EnvState } from '../../model/state.js';

const StateFile = z.object({ format: z.literal(1), revision: z.number().int(), snapshot: Snapshot });

export async function loadState(path: string): Promise<EnvState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const parsed = StateFile.parse(JSON.parse(text));
  return stateFromSnapshot(parsed.revision, parsed.snapshot);
}

export async function saveState(path: string, st: EnvState): Promise<void> {
  await writeFileAtomic(path, JSON.stringify({ format: 1, revision: st.revision, snapshot: snapshotOf(st) }));
}
