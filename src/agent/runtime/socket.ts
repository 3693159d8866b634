// Which Docker socket the agent's runtime uses: --docker-socket, else DOCKER_HOST=unix://…, else
// /var/run/docker.sock when it exists; otherwise the agent runs without a runtime (and says so).
import { existsSync } from 'node:fs';
import type { Logger } from '../../common/log.js';
import { ValidationError } from '../../common/errors.js';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

export function resolveDockerSocket(
  flag: string | undefined,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
  exists: (p: string) => boolean = existsSync,
): string | undefined {
  if (flag !== undefined && flag !== '') return flag.replace(/^unix:\/\//, '');
  const host = env.DOCKER_HOST;
  if (host) {
    if (host.startsWith('unix://')) return host.slice('unix://'.length);
    throw new ValidationError(
      'UnsupportedDockerHost',
      `DOCKER_HOST=${host}: the drover runtime talks to a local socket only (unix://PATH); pass --docker-socket PATH`,
    );
  }
  if (exists(DEFAULT_DOCKER_SOCKET)) return DEFAULT_DOCKER_SOCKET;
  log.info(
    { socket: DEFAULT_DOCKER_SOCKET },
    'no docker socket (none given, no DOCKER_HOST, no /var/run/docker.sock): running without the container runtime',
  );
  return undefined;
}
