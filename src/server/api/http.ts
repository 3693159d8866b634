// HTTP plumbing of the API: JSON bodies, the error resource, the resource/collection envelope.
import type { Context, Next } from 'koa';
import { z, ZodError } from 'zod';
import { DroverError, ValidationError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { Principal } from '../auth/credentials.js';

export interface ApiState {
  principal?: Principal;
  body?: unknown;
}

export type ApiContext = Context & { state: ApiState };

const MAX_BODY = 8 * 1024 * 1024;

/** Reads a JSON body (for POST/PUT/PATCH), with a size limit and a clear error for bad JSON. */
export async function jsonBody(ctx: Context, next: Next): Promise<void> {
  if (['POST', 'PUT', 'PATCH'].includes(ctx.method)) {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) throw new DroverError(413, 'BodyTooLarge', `request body over ${MAX_BODY} bytes`);
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') ctx.state.body = {};
    else {
      try {
        ctx.state.body = JSON.parse(text) as unknown;
      } catch (err) {
        throw new DroverError(400, 'InvalidJson', `request body is not valid JSON: ${(err as Error).message}`);
      }
    }
  }
  await next();
}

export function zodToError(err: ZodError): ValidationError {
  const issue = err.issues[0];
  const path = issue?.path.map(String).join('.') ?? '';
  const code = issue?.code === 'invalid_type' && issue.input === undefined ? 'MissingRequired' : 'InvalidFormat';
  return new ValidationError(code, `${path ? `${path}: ` : ''}${issue?.message ?? 'invalid input'}`, path || undefined);
}

/** Maps errors to the original's error resource and logs the unexpected ones. */
export function errorHandler(log: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new DroverError(404, 'NotFound', `no such endpoint: ${ctx.method} ${ctx.path}`);
      }
    } catch (err) {
      let e: DroverError;
      if (err instanceof DroverError) e = err;
      else if (err instanceof ZodError) e = zodToError(err);
      else {
        log.error({ err, method: ctx.method, path: ctx.path }, 'request failed');
        e = new DroverError(500, 'ServerError', 'internal error (see the server log)');
      }
      ctx.status = e.status;
      ctx.body = e.toJSON();
      if (e.status === 401) ctx.set('WWW-Authenticate', 'Basic realm="drover"');
    }
  };
}

export function parseBody<S extends z.ZodType>(ctx: ApiContext, schema: S): z.infer<S> {
  const r = schema.safeParse(ctx.state.body ?? {});
  if (!r.success) throw zodToError(r.error);
  return r.data;
}

export interface ResourceDef {
  type: string;
  collection: string;
  actions?: (doc: Record<string, unknown>) => string[];
  links?: (doc: Record<string, unknown>) => Record<string, string>;
  /** Fields that never leave the server. */
  hide?: (doc: Record<string, unknown>) => Record<string, unknown>;
}

export function baseUrl(ctx: Context): string {
  return `${ctx.protocol}://${ctx.host}/v1`;
}

export function resource(ctx: Context, def: ResourceDef, doc: object): Record<string, unknown> {
  const raw = doc as Record<string, unknown>;
  const d = def.hide ? def.hide(raw) : raw;
  const base = baseUrl(ctx);
  const self = `${base}/${def.collection}/${String(d.id)}`;
  const links: Record<string, string> = { self };
  for (const [k, v] of Object.entries(def.links?.(raw) ?? {})) links[k] = v.startsWith('http') ? v : `${base}/${v}`;
  const actions: Record<string, string> = {};
  for (const a of def.actions?.(raw) ?? []) actions[a] = `${self}?action=${a}`;
  return { id: d.id, type: typeof d.type === 'string' ? d.type : def.type, ...d, links, actions };
}

const RESERVED = new Set(['limit', 'marker', 'sort', 'order', 'action', 'projectId']);

/** A collection with field filters (`?name=web&state=active`): equality on top-level scalar fields. */
export function collection(ctx: Context, def: ResourceDef, docs: object[], knownFields: string[]): Record<string, unknown> {
  const filters = Object.entries(ctx.query).filter(([k]) => !RESERVED.has(k));
  for (const [k] of filters) {
    if (!knownFields.includes(k)) {
      throw new ValidationError('InvalidFilter', `cannot filter ${def.collection} by "${k}" (fields: ${knownFields.join(', ')})`, k);
    }
  }
  let data = docs.filter((doc) =>
    filters.every(([k, v]) => {
      const field = (doc as Record<string, unknown>)[k];
      const want = Array.isArray(v) ? v : [v];
      return want.includes(field === null || field === undefined ? 'null' : String(field));
    }),
  );
  const limit = ctx.query.limit !== undefined ? Number(ctx.query.limit) : undefined;
  if (limit !== undefined && Number.isInteger(limit) && limit >= 0) data = data.slice(0, limit);
  return {
    type: 'collection',
    resourceType: def.type,
    links: { self: `${baseUrl(ctx)}/${def.collection}` },
    data: data.map((d) => resource(ctx, def, d)),
  };
}
