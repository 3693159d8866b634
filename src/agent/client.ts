// The agent's HTTP client for the control plane.
import { z } from 'zod';
import { DroverError } from '../common/errors.js';
import { jsonOrUndefined } from '../common/json-body.js';
import { Host } from '../model/resources.js';
import { WatchResponse } from '../model/state.js';

export const Registration = z.object({
  host: Host,
  environmentId: z.string(),
  accessKey: z.string(),
  secretKey: z.string(),
});
export type Registration = z.infer<typeof Registration>;

export interface Credentials {
  accessKey: string;
  secretKey: string;
}

/** The server could not be reached or answered 5xx: worth retrying. */
export class ServerUnavailableError extends Error {}

export class ControlPlaneClient {
  constructor(
    readonly baseUrl: string,
    private credentials?: Credentials,
  ) {}

  setCredentials(c: Credentials): void {
    this.credentials = c;
  }

  private async request(method: string, path: string, body?: unknown, timeoutMs = 15_000, signal?: AbortSignal): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.credentials) {
      headers.authorization = 'Basic ' + Buffer.from(`${this.credentials.accessKey}:${this.credentials.secretKey}`).toString('base64');
    }
    const signals = [AbortSignal.timeout(timeoutMs), ...(signal ? [signal] : [])];
    let res: Response;
    try {
      res = await fetch(this.baseUrl.replace(/\/+$/, '') + path, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.any(signals),
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ServerUnavailableError(`cannot reach ${this.baseUrl}: ${(err as Error).message}`);
    }
    const json = jsonOrUndefined(await res.text());
    if (res.status >= 500) throw new ServerUnavailableError(`${this.baseUrl} answered ${res.status}`);
    if (!res.ok) {
      const e = json as { code?: string; message?: string } | undefined;
      throw new DroverError(res.status, e?.code ?? 'RequestFailed', `${method} ${path}: ${e?.message ?? `HTTP ${res.status}`}`);
    }
    return json;
  }

  async register(input: Record<string, unknown>): Promise<Registration> {
    return Registration.parse(await this.request('POST', '/v1/agent/register', input));
  }

  async watch(after: number, timeoutSec: number, signal?: AbortSignal): Promise<WatchResponse> {
    const json = await this.request('GET', `/v1/agent/watch?after=${after}&timeout=${timeoutSec}`, undefined, (timeoutSec + 15) * 1000, signal);
    return WatchResponse.parse(json);
  }

  /** Signs this host's IPsec certificate request (certificate mode of the managed network). */
  async certificate(csr: string): Promise<unknown> {
    return this.request('POST', '/v1/agent/certificate', { csr });
  }

  /** The answer's body (it carries the answers to `found` containers). */
  async report(body: unknown): Promise<unknown> {
    return this.request('POST', '/v1/agent/report', body);
  }
}
