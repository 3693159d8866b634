// One run at a time; triggers during a run coalesce into a single follow-up run that starts after it.
export class Coalescer<T> {
  private running: Promise<T> | undefined;
  private queued: Promise<T> | undefined;

  constructor(private readonly fn: () => Promise<T>) {}

  /** Resolves with the result of a run that started after this call (the current one if idle). */
  trigger(): Promise<T> {
    if (!this.running) {
      const run = this.fn();
      this.running = run;
      const clear = () => {
        if (this.running === run) this.running = undefined;
      };
      run.then(clear, clear);
      return run;
    }
    this.queued ??= this.running.then(
      () => this.startQueued(),
      () => this.startQueued(),
    );
    return this.queued;
  }

  /** Waits for the current and queued runs (errors ignored). */
  async idle(): Promise<void> {
    while (this.running || this.queued) {
      await (this.queued ?? this.running)?.catch(() => undefined);
    }
  }

  private startQueued(): Promise<T> {
    this.queued = undefined;
    return this.trigger();
  }
}
