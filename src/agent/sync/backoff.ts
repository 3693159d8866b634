// The agent's one backoff rule: the delay doubles from `initialMs` with every consecutive failure, up to
// `maxMs`. `backoffDelayMs` is the rule for callers that count failures themselves (per container, per
// pass); `Backoff` keeps the count and adds jitter (the delay is drawn from [cap/2, cap]), abortable.
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/** The delay after `failures` consecutive failures (1: initialMs), at most maxMs; no jitter. */
export function backoffDelayMs(policy: BackoffPolicy, failures: number): number {
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, failures - 1));
}

export class Backoff {
  private attempt = 0;

  constructor(private readonly opts: BackoffPolicy) {}

  reset(): void {
    this.attempt = 0;
  }

  nextDelayMs(): number {
    this.attempt = Math.min(this.attempt + 1, 30);
    const cap = backoffDelayMs(this.opts, this.attempt);
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
