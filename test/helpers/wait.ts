// Polling for async effects in tests (never for timing: performance belongs in bench/).

/** Polls `fn` until it returns a truthy value; throws after `ms` with the last error. */
export async function eventually<T>(fn: () => T | Promise<T>, ms = 10_000, what = 'condition', everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
