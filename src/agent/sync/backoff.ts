// Exponential backoff with full jitter, abortable.
export class Backoff {
  private attempt = 0;

  constructor(private readonly opts: { initialMs: number; maxMs: number }) {}

  reset(): void {
    this.attempt = 0;
  }

  nextDelayMs(): number {
    const cap = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return cap / 2 + Math.random() * (cap / 2);
  }

  wait(signal?: AbortSignal): Promise<void> {
    const ms = this.nextDelayMs();
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
