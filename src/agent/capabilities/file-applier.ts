// An applier for artefacts that are files (balancer configs, certificates, resolver files): validates
// the new text (e.g. `haproxy -c -f <tmp>`), then swaps it in atomically and keeps a copy of the last
// good one beside it. A failed validation leaves the file in force untouched. The resync (verify) puts
// back a file that was deleted or changed behind the agent's back.
import { readFile, copyFile, rm } from 'node:fs/promises';
import { writeFileAtomic } from '../../common/atomic-file.js';
import type { Applier } from './capability.js';

export interface FileApplierOptions {
  path: string;
  mode?: number;
  /** Throws (with a message worth reporting) when the candidate file is not acceptable. */
  validate?: (candidatePath: string) => Promise<void>;
  /** Runs after a successful swap (e.g. a reload). */
  afterSwap?: (path: string) => Promise<void>;
}

export class FileApplier implements Applier<string> {
  constructor(private readonly opts: FileApplierOptions) {}

  async apply(text: string): Promise<void> {
    const { path } = this.opts;
    let current: string | undefined;
    try {
      current = await readFile(path, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === text) return;
    const candidate = `${path}.candidate`;
    await writeFileAtomic(candidate, text, this.opts.mode);
    try {
      await this.opts.validate?.(candidate);
    } catch (err) {
      await rm(candidate, { force: true });
      throw err;
    }
    if (current !== undefined) await copyFile(path, `${path}.last-good`);
    await writeFileAtomic(path, text, this.opts.mode);
    await rm(candidate, { force: true });
    await this.opts.afterSwap?.(path);
  }

  /**
   * Resync: the file in force must be `text` (the last one applied, validated then). A deleted or
   * changed file is restored (atomically, then afterSwap); the drifted content is not kept as last good.
   */
  async verify(text: string): Promise<string | undefined> {
    const { path } = this.opts;
    let current: string | undefined;
    try {
      current = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      current = undefined;
    }
    if (current === text) return undefined;
    await writeFileAtomic(path, text, this.opts.mode);
    await this.opts.afterSwap?.(path);
    return current === undefined ? `${path} was missing: restored` : `${path} had been changed: restored`;
  }
}
