// Runs every capability on each new state, one state at a time, and remembers what each last applied.
import type { EnvState } from '../../model/state.js';
import type { Logger } from '../../common/log.js';
import { errorMessage } from '../../common/errors.js';
import type { Capability, CapabilityStatus, HostContext } from './capability.js';

interface Slot {
  cap: Capability<unknown>;
  lastGood?: unknown;
  hasGood: boolean;
  status?: CapabilityStatus;
}

export class CapabilityRunner {
  private readonly slots: Slot[];
  private chain: Promise<void> = Promise.resolve();

  constructor(
    caps: Capability<unknown>[],
    private readonly log: Logger,
  ) {
    this.slots = caps.map((cap) => ({ cap, hasGood: false }));
  }

  /** Renders and applies for this state; resolves with each capability's status (only changed ones are applied). */
  update(state: EnvState, host: HostContext): Promise<Record<string, CapabilityStatus>> {
    const run = this.chain.then(() => this.runAll(state, host));
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  statuses(): Record<string, CapabilityStatus> {
    return Object.fromEntries(this.slots.filter((s) => s.status).map((s) => [s.cap.name, s.status as CapabilityStatus]));
  }

  private async runAll(state: EnvState, host: HostContext): Promise<Record<string, CapabilityStatus>> {
    for (const slot of this.slots) {
      const { cap } = slot;
      const log = this.log.child({ capability: cap.name, revision: state.revision });
      let artefact: unknown;
      try {
        artefact = cap.render(state, host);
      } catch (err) {
        slot.status = { revision: state.revision, ok: false, error: `render failed: ${errorMessage(err)}` };
        log.error({ err }, 'render failed');
        continue;
      }
      const same = cap.same ?? ((a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b));
      if (slot.hasGood && slot.status?.ok && same(slot.lastGood, artefact)) {
        slot.status = { revision: state.revision, ok: true };
        continue;
      }
      try {
        await cap.applier.apply(artefact);
        slot.lastGood = artefact;
        slot.hasGood = true;
        slot.status = { revision: state.revision, ok: true };
        log.info('applied');
      } catch (err) {
        slot.status = { revision: state.revision, ok: false, error: errorMessage(err) };
        log.warn({ err: errorMessage(err) }, 'apply failed; the last good artefact stays in force');
      }
    }
    return this.statuses();
  }

  async close(): Promise<void> {
    await this.chain;
    for (const s of this.slots) await s.cap.applier.close?.();
  }
}
