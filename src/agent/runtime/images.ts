// Images for the runtime: local checks, pulls (bounded in time, abortable) and a memory of failed pulls.
// The pull policies (decided in docker-runtime.ts, pulls run in pull-queue.ts):
//   missing → use the local image; when absent, pull; fail with a clear message if that fails too
//   always  → pull; a failed pull is reported but not fatal when a local image exists
//   never   → the local image or a clear error
import type Dockerode from 'dockerode';
import type { LaunchConfig } from '../../model/resources.js';
import { dockerStatus } from './docker-api.js';
import { lineSplitter } from './lines.js';

export type PullPolicy = LaunchConfig['pullPolicy'];

/** `busybox` → `busybox:latest`; references with a tag or digest stay as they are. */
export function withDefaultTag(image: string): string {
  if (image.includes('@')) return image;
  const lastSlash = image.lastIndexOf('/');
  return image.slice(lastSlash + 1).includes(':') ? image : `${image}:latest`;
}

export async function hasImage(docker: Dockerode, image: string): Promise<boolean> {
  try {
    await docker.getImage(image).inspect();
    return true;
  } catch (err) {
    if (dockerStatus(err) === 404) return false;
    throw err;
  }
}

/**
 * Pulls and waits for the end of the progress stream; progress lines carrying `error` fail the pull.
 * The timeout covers the whole pull (a registry that accepts and never answers included); `signal`
 * aborts it (the runtime closing).
 */
export async function pullImage(docker: Dockerode, image: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, timeoutMs);
  timer.unref();
  const onAbort = () => ac.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const why = () => new Error(timedOut ? `pull did not finish within ${Math.round(timeoutMs / 1000)} s` : 'pull aborted (the runtime is stopping)');
  try {
    if (signal?.aborted) throw why();
    let stream: NodeJS.ReadableStream;
    try {
      stream = (await docker.pull(withDefaultTag(image), { abortSignal: ac.signal })) as NodeJS.ReadableStream;
    } catch (err) {
      throw ac.signal.aborted ? why() : err;
    }
    await new Promise<void>((resolve, reject) => {
      let failure: string | undefined;
      const finish = (err?: Error) => {
        ac.signal.removeEventListener('abort', onStop);
        stream.removeListener('data', onData);
        if (err) {
          if ('destroy' in stream && typeof stream.destroy === 'function') (stream.destroy as () => void)();
          reject(err);
        } else if (failure) reject(new Error(failure));
        else resolve();
      };
      const onStop = () => finish(why());
      const onData = lineSplitter((line) => {
        try {
          const j = JSON.parse(line) as unknown;
          if (j && typeof j === 'object' && 'error' in j) failure = String((j as { error: unknown }).error);
        } catch {
          /* progress lines we cannot read are not errors */
        }
      });
      ac.signal.addEventListener('abort', onStop, { once: true });
      stream.on('data', onData);
      stream.once('end', () => finish());
      stream.once('error', (e: Error) => finish(ac.signal.aborted ? why() : e));
    });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Remembers failed pulls, so a pass does not wait on the same failing registry again right away. */
export class PullFailures {
  private readonly failed = new Map<string, { at: number; why: string }>();

  constructor(private readonly retryAfterMs = 30_000) {}

  recent(image: string, now = Date.now()): string | undefined {
    const f = this.failed.get(image);
    return f && now - f.at < this.retryAfterMs ? f.why : undefined;
  }

  record(image: string, why: string): void {
    this.failed.set(image, { at: Date.now(), why });
  }

  clear(image: string): void {
    this.failed.delete(image);
  }
}
