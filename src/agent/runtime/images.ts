// Making a container's image available according to its pull policy:
//   missing → use the local image; when absent, pull; fail with a clear message if that fails too
//   always  → pull; a failed pull is reported but not fatal when a local image exists
//   never   → the local image or a clear error
import type Dockerode from 'dockerode';
import type { Logger } from '../../common/log.js';
import type { LaunchConfig } from '../../model/resources.js';
import { dockerMessage, dockerStatus } from './docker-api.js';
import { ImageUnavailableError } from './errors.js';
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

/** Pulls and waits for the end of the progress stream; progress lines carrying `error` fail the pull. */
export async function pullImage(docker: Dockerode, image: string, timeoutMs: number): Promise<void> {
  const stream = await docker.pull(withDefaultTag(image));
  await new Promise<void>((resolve, reject) => {
    let failure: string | undefined;
    const timer = setTimeout(() => finish(new Error(`pull did not finish within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      stream.removeListener('data', onData);
      if (err) {
        if ('destroy' in stream && typeof stream.destroy === 'function') (stream.destroy as () => void)();
        reject(err);
      } else if (failure) reject(new Error(failure));
      else resolve();
    };
    const onData = lineSplitter((line) => {
      try {
        const j = JSON.parse(line) as unknown;
        if (j && typeof j === 'object' && 'error' in j) failure = String((j as { error: unknown }).error);
      } catch {
        /* progress lines we cannot read are not errors */
      }
    });
    stream.on('data', onData);
    stream.once('end', () => finish());
    stream.once('error', (e: Error) => finish(e));
  });
}

export interface EnsureImageResult {
  /** A non-fatal problem worth reporting (a failed `always` pull with a local image to fall back on). */
  warning?: string;
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

export async function ensureImage(
  docker: Dockerode,
  image: string,
  policy: PullPolicy,
  log: Logger,
  pullTimeoutMs = 10 * 60_000,
  failures: PullFailures = new PullFailures(0),
): Promise<EnsureImageResult> {
  const local = await hasImage(docker, image);
  if (policy === 'never') {
    if (!local) throw new ImageUnavailableError(image, 'is not on this host and its pull policy is "never" (load it with docker load / docker pull)');
    return {};
  }
  if (policy === 'missing' && local) return {};
  try {
    const recent = failures.recent(image);
    if (recent !== undefined) throw new Error(recent);
    log.info({ image, policy }, 'pulling image');
    try {
      await pullImage(docker, image, pullTimeoutMs);
    } catch (err) {
      failures.record(image, dockerMessage(err));
      throw err;
    }
    failures.clear(image);
    return {};
  } catch (err) {
    const why = dockerMessage(err);
    if (local) {
      log.warn({ image, err: why }, 'pull failed; using the local image');
      return { warning: `pull of ${image} failed (${why}); using the local image` };
    }
    throw new ImageUnavailableError(image, `is not on this host and pulling it failed: ${why}`);
  }
}
