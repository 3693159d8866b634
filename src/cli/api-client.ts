// The CLI's client for the control plane API (admin key), and where it finds its credentials:
// flags, then DROVER_URL / DROVER_ACCESS_KEY / DROVER_SECRET_KEY, then <dataDir>/cli.json (written by `drover up`).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { DroverError } from '../common/errors.js';

export const CliCredentials = z.object({ url: z.string(), accessKey: z.string(), secretKey: z.string() });
export type CliCredentials = z.infer<typeof CliCredentials>;

export function resolveCredentials(
  flags: { url?: string; accessKey?: string; secretKey?: string },
  dataDir: string,
): CliCredentials {
  const file = join(dataDir, 'cli.json');
  const stored = existsSync(file) ? CliCredentials.partial().parse(JSON.parse(readFileSync(file, 'utf8'))) : {};
  const url = flags.url ?? process.env.DROVER_URL ?? stored.url ?? 'http://127.0.0.1:8080';
  const accessKey = flags.accessKey ?? process.env.DROVER_ACCESS_KEY ?? stored.accessKey;
  const secretKey = flags.secretKey ?? process.env.DROVER_SECRET_KEY ?? stored.secretKey;
  if (!accessKey || !secretKey) {
    throw new DroverError(
      401,
      'NoCredentials',
      `no API key: pass --access-key/--secret-key, set DROVER_ACCESS_KEY/DROVER_SECRET_KEY, or run \`drover up\` (writes ${file})`,
    );
  }
  return { url, accessKey, secretKey };
}

export class ApiClient {
  constructor(private readonly c: CliCredentials) {}

  async call<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.c.url.replace(/\/+$/, '') + path, {
        method,
        headers: {
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          authorization: 'Basic ' + Buffer.from(`${this.c.accessKey}:${this.c.secretKey}`).toString('base64'),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      throw new DroverError(503, 'Unreachable', `cannot reach the control plane at ${this.c.url}: ${(err as Error).message}`);
    }
    const text = await res.text();
    const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (!res.ok) {
      throw new DroverError(res.status, String(json.code ?? 'RequestFailed'), String(json.message ?? `HTTP ${res.status}`), json.fieldName as string | undefined);
    }
    return json as T;
  }
}
