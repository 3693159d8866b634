// Typed errors of the Docker runtime. Their messages are what operators see (container reports, the
// capability status, logs), so they say what failed and what to do.

export class RuntimeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The image is not usable on this host (absent and not pullable, or pull policy `never`). */
export class ImageUnavailableError extends RuntimeError {
  constructor(
    readonly image: string,
    detail: string,
  ) {
    super(`image ${image} ${detail}`);
  }
}

/** The managed network could not be created or does not match the environment. */
export class ManagedNetworkError extends RuntimeError {}

/** One container could not be brought to its desired state. */
export class ContainerActionError extends RuntimeError {
  constructor(
    readonly recordId: string,
    readonly dockerName: string,
    readonly action: string,
    detail: string,
  ) {
    super(`${action} ${dockerName}: ${detail}`);
  }
}

/** A reconcile pass finished with failures (the capability status shows this message). */
export class ConvergeError extends RuntimeError {
  constructor(readonly failures: string[]) {
    const shown = failures.slice(0, 3).join('; ');
    super(`${failures.length} container${failures.length === 1 ? '' : 's'} not converged: ${shown}${failures.length > 3 ? '; …' : ''}`);
  }
}
