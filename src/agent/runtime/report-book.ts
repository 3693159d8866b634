// The latest observed state of each container record, with only the changed ones waiting to be drained.
import type { ContainerReport } from '../../model/reports.js';

export type RuntimeState = 'creating' | 'starting' | 'running' | 'stopped' | 'error' | 'removed';

export class ReportBook {
  private readonly last = new Map<string, string>();
  private readonly hadMessage = new Set<string>();
  private readonly pending = new Map<string, ContainerReport>();
  private readonly listeners: (() => void)[] = [];
  private notifyQueued = false;

  /** Records a report; queues it (and tells the listeners) only when it differs from the last one. */
  update(r: ContainerReport): void {
    let report = r;
    // A cleared message is sent as '' once, so the server forgets the old one.
    if (report.message === undefined && this.hadMessage.has(report.id)) report = { ...report, message: '' };
    if (report.message) this.hadMessage.add(report.id);
    else this.hadMessage.delete(report.id);
    const key = JSON.stringify(report);
    if (this.last.get(report.id) === key) return;
    this.last.set(report.id, key);
    this.pending.set(report.id, report);
    this.notify();
  }

  /** The last report of a record (as queued), for decisions that depend on it. */
  lastOf(id: string): ContainerReport | undefined {
    const s = this.last.get(id);
    return s ? (JSON.parse(s) as ContainerReport) : undefined;
  }

  /** Forgets a record (after its final `removed` report). */
  forget(id: string): void {
    this.last.delete(id);
    this.hadMessage.delete(id);
  }

  drain(): ContainerReport[] {
    const out = [...this.pending.values()];
    this.pending.clear();
    return out;
  }

  /** Tells the listeners there is something to send besides reports (found containers). */
  poke(): void {
    this.notify();
  }

  onReports(cb: () => void): void {
    this.listeners.push(cb);
    if (this.pending.size) this.notify();
  }

  private notify(): void {
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      for (const cb of this.listeners) cb();
    });
  }
}
