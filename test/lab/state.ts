// The lab's state file (<dir>/lab.json) and the registry under BASE_DIR. The state file is the only thing
// teardown needs: a lab can be torn down from another process (`npm run lab -- down`) or by the reaper of a
// later run. Written atomically after every step, so a lab that failed half-way is still fully described.
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, openSync, closeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

/** Every lab registers here (registry/<id> = its dir) and claims an underlay slot (slots/<n> = its id). */
export const BASE_DIR = '/tmp/drover-lab';
const REGISTRY = join(BASE_DIR, 'registry');
const SLOTS = join(BASE_DIR, 'slots');
export const MAX_SLOTS = 64;

const ProcRefSchema = z.object({ pid: z.number().int(), startTime: z.string() });

const ProcEntrySchema = ProcRefSchema.extend({
  /** 'control-plane', 'agent', 'spawn', ... (dockerds are kept on their host). */
  what: z.string(),
  host: z.string().optional(),
  /** The process leads its own process group: signal the group. */
  group: z.boolean(),
  log: z.string().optional(),
  cmd: z.array(z.string()).optional(),
});
export type ProcEntry = z.infer<typeof ProcEntrySchema>;

const HostStateSchema = z.object({
  index: z.number().int(),
  name: z.string(),
  netns: z.string(),
  ip: z.string(),
  dir: z.string(),
  dataDir: z.string(),
  dockerSocket: z.string(),
  dataRoot: z.string(),
  execRoot: z.string(),
  dockerdLog: z.string(),
  dockerd: ProcRefSchema.optional(),
});
export type HostState = z.infer<typeof HostStateSchema>;

const ControlPlaneSchema = z.object({ url: z.string(), accessKey: z.string(), secretKey: z.string(), dataDir: z.string(), log: z.string() });
export type ControlPlaneInfo = z.infer<typeof ControlPlaneSchema>;

const LabStateSchema = z.object({
  version: z.literal(1),
  id: z.string().regex(/^[0-9a-f]{6}$/),
  dir: z.string(),
  created: z.string(),
  /** The process that owns the lab; null = kept running on purpose (`npm run lab -- up`), never reaped. */
  owner: ProcRefSchema.nullable(),
  slot: z.number().int().nullable(),
  subnetPrefix: z.string(),
  rootIp: z.string(),
  rootVeth: z.string(),
  switchNetns: z.string(),
  hosts: z.array(HostStateSchema),
  procs: z.array(ProcEntrySchema),
  controlPlane: ControlPlaneSchema.optional(),
});
export type LabState = z.infer<typeof LabStateSchema>;

export const stateFile = (dir: string): string => join(dir, 'lab.json');

export function writeState(st: LabState): void {
  const file = stateFile(st.dir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(st, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

export function readState(dir: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(stateFile(dir), 'utf8');
  } catch {
    return undefined;
  }
  const r = LabStateSchema.safeParse(JSON.parse(text));
  return r.success ? r.data : undefined;
}

// ---- registry: id -> lab dir ---------------------------------------------------------------------

export function register(id: string, dir: string): void {
  mkdirSync(REGISTRY, { recursive: true });
  writeFileSync(join(REGISTRY, id), dir + '\n');
}

export function unregister(id: string): void {
  rmSync(join(REGISTRY, id), { force: true });
}

/** All registered labs: id and dir. */
export function registeredLabs(): { id: string; dir: string }[] {
  let names: string[];
  try {
    names = readdirSync(REGISTRY);
  } catch {
    return [];
  }
  const out: { id: string; dir: string }[] = [];
  for (const id of names) {
    try {
      out.push({ id, dir: readFileSync(join(REGISTRY, id), 'utf8').trim() });
    } catch {
      // removed concurrently
    }
  }
  return out;
}

export function isRegistered(id: string): boolean {
  return existsSync(join(REGISTRY, id));
}

// ---- underlay slots: slot n = subnet 198.18.n.0/24 -------------------------------------------------

/**
 * Claims the lowest free slot for `id` (atomic create of slots/<n>). A slot whose lab is no longer
 * registered is stale and taken over. `inUse(n)` lets the caller veto slots whose subnet is in use anyway.
 */
export function claimSlot(id: string, inUse: (slot: number) => boolean = () => false): number {
  mkdirSync(SLOTS, { recursive: true });
  for (let n = 0; n < MAX_SLOTS; n++) {
    const file = join(SLOTS, String(n));
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, 'wx');
        writeFileSync(fd, id + '\n');
        closeSync(fd);
        if (inUse(n)) {
          rmSync(file, { force: true });
          break;
        }
        return n;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        let owner = '';
        try {
          owner = readFileSync(file, 'utf8').trim();
        } catch {
          continue; // released meanwhile: retry
        }
        if (owner && isRegistered(owner)) break; // taken
        rmSync(file, { force: true }); // stale: its lab is gone
      }
    }
  }
  throw new Error(`no free lab slot (${MAX_SLOTS} labs up?): run "npm run lab -- status" / "npm run lab -- down"`);
}

export function releaseSlot(slot: number | null, id: string): void {
  if (slot === null) return;
  const file = join(SLOTS, String(slot));
  try {
    if (readFileSync(file, 'utf8').trim() === id) rmSync(file, { force: true });
  } catch {
    // already gone
  }
}
