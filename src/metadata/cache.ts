// A small LRU cache bounded by entry count and by bytes, keys included (the rendered responses of the current
// answers). A key costs two bytes per UTF-16 unit (what V8 may hold for it) plus a fixed overhead per
// entry, so many entries with long keys are bounded as surely as a few with large bodies.

export interface Sized {
  /** Approximate memory cost of the value in bytes. */
  readonly size: number;
}

/** Map entry, key string and bookkeeping, roughly. */
export const ENTRY_OVERHEAD = 96;

export function entryCost(key: string, value: Sized): number {
  return value.size + 2 * key.length + ENTRY_OVERHEAD;
}

export class LruCache<V extends Sized> {
  private readonly map = new Map<string, { value: V; cost: number }>();
  private bytes = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number,
  ) {}

  get(key: string): V | undefined {
    const e = this.map.get(key);
    if (e !== undefined && this.map.size > 1) {
      // Move to the most recently used end.
      this.map.delete(key);
      this.map.set(key, e);
    }
    return e?.value;
  }

  /** Stores `value` unless it alone (with its key) costs more than half the byte budget (then it is just not cached). */
  set(key: string, value: V): void {
    const old = this.map.get(key);
    if (old !== undefined) {
      this.map.delete(key);
      this.bytes -= old.cost;
    }
    const cost = entryCost(key, value);
    if (cost > this.maxBytes / 2) return;
    this.map.set(key, { value, cost });
    this.bytes += cost;
    while (this.map.size > this.maxEntries || this.bytes > this.maxBytes) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      const e = this.map.get(oldest.value) as { value: V; cost: number };
      this.map.delete(oldest.value);
      this.bytes -= e.cost;
    }
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }

  get size(): number {
    return this.map.size;
  }

  /** Bytes accounted for (values, keys and per-entry overhead). */
  get byteSize(): number {
    return this.bytes;
  }
}
