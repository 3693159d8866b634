// A small LRU cache bounded by entry count and by bytes (the rendered responses of the current answers).

export interface Sized {
  /** Approximate memory cost in bytes. */
  readonly size: number;
}

export class LruCache<V extends Sized> {
  private readonly map = new Map<string, V>();
  private bytes = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number,
  ) {}

  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined && this.map.size > 1) {
      // Move to the most recently used end.
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  /** Stores `value` unless it alone is larger than half the byte budget (then it is just not cached). */
  set(key: string, value: V): void {
    const old = this.map.get(key);
    if (old !== undefined) {
      this.map.delete(key);
      this.bytes -= old.size;
    }
    if (value.size > this.maxBytes / 2) return;
    this.map.set(key, value);
    this.bytes += value.size;
    while (this.map.size > this.maxEntries || this.bytes > this.maxBytes) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      const v = this.map.get(oldest.value) as V;
      this.map.delete(oldest.value);
      this.bytes -= v.size;
    }
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }

  get size(): number {
    return this.map.size;
  }

  get byteSize(): number {
    return this.bytes;
  }
}
