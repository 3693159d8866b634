// Image pulls in their own bounded queue: one pull per image, shared by every container waiting for it;
// at most `concurrency` pulls at once. Containers never wait for a pull while holding a slot of the
// container queue: they ask for the image, step aside, and are woken (onDone) when the pull ended.
export interface PullQueueOptions {
  concurrency: number;
  pull: (image: string) => Promise<void>;
  /** The pull of `image` ended (error undefined on success); `waiters` are the keys that asked for it. */
  onDone: (image: string, waiters: string[], error: string | undefined) => void;
  errorMessage: (err: unknown) => string;
}

export interface PullInfo {
  image: string;
  state: 'queued' | 'pulling';
  /** Keys (containers) waiting for it. */
  waiters: string[];
  sinceMs: number;
}

interface Entry {
  state: 'queued' | 'pulling';
  waiters: Set<string>;
  since: number;
}

export class PullQueue {
  private readonly entries = new Map<string, Entry>();
  private readonly order: string[] = [];
  private active = 0;
  private closed = false;

  constructor(private readonly o: PullQueueOptions) {}

  /** Asks for `image` on behalf of `key`; joins a pull of the same image already queued or running. */
  request(image: string, key: string): void {
    if (this.closed) return;
    const e = this.entries.get(image);
    if (e) {
      e.waiters.add(key);
      return;
    }
    this.entries.set(image, { state: 'queued', waiters: new Set([key]), since: Date.now() });
    this.order.push(image);
    this.pump();
  }

  /** `key` does not need `image` any more (removed, changed); the pull itself goes on. */
  withdraw(key: string): void {
    for (const e of this.entries.values()) e.waiters.delete(key);
  }

  isWaiting(key: string): boolean {
    for (const e of this.entries.values()) if (e.waiters.has(key)) return true;
    return false;
  }

  /** Pulls queued or running, oldest first. */
  pending(): PullInfo[] {
    return [...this.entries].map(([image, e]) => ({ image, state: e.state, waiters: [...e.waiters], sinceMs: e.since }));
  }

  close(): void {
    this.closed = true;
  }

  private pump(): void {
    while (!this.closed && this.active < this.o.concurrency && this.order.length > 0) {
      const image = this.order.shift() as string;
      const e = this.entries.get(image);
      if (!e) continue;
      e.state = 'pulling';
      this.active++;
      void this.runOne(image, e);
    }
  }

  private async runOne(image: string, e: Entry): Promise<void> {
    let error: string | undefined;
    try {
      await this.o.pull(image);
    } catch (err) {
      error = this.o.errorMessage(err);
    }
    this.active--;
    this.entries.delete(image);
    if (!this.closed) {
      try {
        this.o.onDone(image, [...e.waiters], error);
      } catch {
        /* the listener's problem, not the pull's */
      }
    }
    this.pump();
  }
}
