// Listening errors as one line a user can act on, and bind tests run before anything is created.
import dgram from 'node:dgram';
import net from 'node:net';
import { StartupError } from './errors.js';

export interface ListenAt {
  host: string;
  port: number;
}

const REASONS: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'address not available on this machine',
};

export function formatAddress(at: ListenAt): string {
  return `${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`;
}

/**
 * The one-line StartupError for a failed listen (address in use, no permission, no such address), or
 * undefined when err is something else. `flag` is the option that chooses this address.
 */
export function listenError(err: unknown, at: ListenAt, flag: string): StartupError | undefined {
  const e = err as (NodeJS.ErrnoException & { address?: unknown; port?: unknown }) | undefined;
  const code = e?.code;
  if (typeof code !== 'string' || !(code in REASONS)) return undefined;
  // node's errors carry the address they were about; the batched UDP addon's do not.
  const where: ListenAt =
    typeof e?.address === 'string' && typeof e.port === 'number' && e.port !== 0 ? { host: e.address, port: e.port } : at;
  const hint =
    code === 'EADDRINUSE'
      ? `is another drover running? use ${flag}`
      : code === 'EACCES'
        ? `ports below 1024 need root; or use ${flag}`
        : `use ${flag}`;
  const out = new StartupError(code === 'EADDRINUSE' ? 'AddressInUse' : 'CannotListen', `cannot listen on ${formatAddress(where)}: ${REASONS[code]} (${hint})`);
  out.cause = err;
  return out;
}

/** Rethrows a listen failure as its one-line StartupError, anything else as it is. */
export function rethrowListenError(err: unknown, at: ListenAt, flag: string): never {
  throw listenError(err, at, flag) ?? err;
}

async function tcpBindTest(at: ListenAt): Promise<void> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ host: at.host, port: at.port, exclusive: true }, () => resolve());
  });
  await new Promise<void>((resolve) => s.close(() => resolve()));
}

async function udpBindTest(at: ListenAt): Promise<void> {
  const s = dgram.createSocket(net.isIPv6(at.host) ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind({ address: at.host, port: at.port, exclusive: true }, () => resolve());
    });
  } finally {
    await new Promise<void>((resolve) => {
      try {
        s.close(() => resolve());
      } catch {
        resolve(); // never bound
      }
    });
  }
}

export interface BindTest {
  at: ListenAt;
  /** The option that chooses this address (named in the error). */
  flag: string;
  tcp?: boolean;
  udp?: boolean;
  /**
   * The address may not exist yet because its server adds it when it starts (the agent's
   * 169.254.169.250): only "in use" and "permission denied" fail the test.
   */
  mayNotExistYet?: boolean;
}

/**
 * Fails fast, with the one-line error, when an address cannot be listened on: binds it and lets it go
 * at once. Port 0 (any free port) always passes.
 */
export async function assertCanListen(tests: readonly BindTest[]): Promise<void> {
  for (const t of tests) {
    if (t.at.port === 0) continue;
    try {
      if (t.tcp ?? true) await tcpBindTest(t.at);
      if (t.udp) await udpBindTest(t.at);
    } catch (err) {
      if (t.mayNotExistYet && (err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL') continue;
      rethrowListenError(err, t.at, t.flag);
    }
  }
}

/** A TCP port that is free on host right now (for "--listen HOST:0" where the port must be known up front). */
export async function pickFreePort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, host, () => resolve());
  });
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
