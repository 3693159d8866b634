// HTTP plumbing of the API: JSON bodies, the error resource, the resource/collection envelope.
import type { Context, Next } from 'koa';
import { z, ZodError } from 'zod';
import { DroverError, ValidationError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { Principal } from '../auth/credentials.js';
import { LIMITS, formatJsonPath, jsonTreeProblem } from '../../model/limits.js';

export interface ApiState {
  principal?: Principal;
  body?: unknown;
}

export type ApiContext = Context & { state: ApiState };

const MAX_BODY = LIMITS.maxBodyBytes;
const DRAIN_LIMIT = 4 * MAX_BODY;
/** Nesting allowed in a request body: room for the resource's own structure around free-form JSON. */
const MAX_BODY_DEPTH = LIMITS.maxDocumentDepth;

const tooLarge = () =>
  new DroverError(413, 'BodyTooLarge', `request body is larger than ${MAX_BODY} bytes (${MAX_BODY / 1024 / 1024} MiB); split the request or trim it`);

/**
 * Reads a JSON body (for POST/PUT/PATCH): at most MAX_BODY bytes (413), valid JSON (400), nested at most
 * MAX_BODY_DEPTH levels and without `__proto__` keys (422 naming the field). V8's JSON.parse is not
 * recursive, so any depth parses; the depth check is iterative too, and what passes it can be
 * serialized again (JSON.stringify is recursive).
 */
export async function jsonBody(ctx: Context, next: Next): Promise<void> {
  if (['POST', 'PUT', 'PATCH'].includes(ctx.method)) {
    // Over the limit, the rest is read and dropped (up to DRAIN_LIMIT) so that the client, still
    // sending, receives the 413 instead of a reset connection; beyond that the connection is closed.
    const declared = Number(ctx.get('content-length') || 0);
    if (declared > DRAIN_LIMIT) {
      ctx.set('Connection', 'close');
      throw tooLarge();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > DRAIN_LIMIT) break;
      if (size <= MAX_BODY) chunks.push(chunk);
    }
    if (size > MAX_BODY) {
      ctx.set('Connection', 'close');
      throw tooLarge();
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') ctx.state.body = {};
    else {
      let body: unknown;
      try {
        body = JSON.parse(text) as unknown;
      } catch (err) {
        throw new DroverError(400, 'InvalidJson', `request body is not valid JSON: ${(err as Error).message}`);
      }
      const p = jsonTreeProblem(body, { maxDepth: MAX_BODY_DEPTH, forbidProtoKey: true });
      if (p) {
        const field = formatJsonPath(p.path);
        throw new ValidationError(
          p.kind === 'depth' ? 'NestedTooDeep' : 'InvalidKey',
          `${field || 'the request body'} ${p.message}${p.kind === 'depth' ? ` (free-form fields such as metadata take at most ${LIMITS.maxJsonDepth})` : ''}`,
          typeof p.path[0] === 'string' ? p.path[0] : undefined,
        );
      }
      ctx.state.body = body;
    }
  }
  await next();
}

/** The store's constraint errors (better-sqlite3's SqliteError): a conflict with what exists, never a 500. */
function storeConflict(err: unknown): DroverError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (!(err instanceof Error) || typeof code !== 'string') return undefined;
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new DroverError(503, 'StoreBusy', 'the store is busy with another change; retry in a moment');
  }
  if (!code.startsWith('SQLITE_CONSTRAINT')) return undefined;
  // "UNIQUE constraint failed: api_keys.access_key" → the column, in the API's spelling.
  const column = /constraint failed: \w+\.(\w+)/.exec(err.message)?.[1];
  const field = column?.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return new DroverError(409, 'NotUnique', `${field ? `${field}: ` : ''}a resource with this value already exists`, field);
  }
  if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
    return new DroverError(409, 'InUse', 'the change conflicts with resources that refer to this one (or that it refers to)');
  }
  return new DroverError(409, 'Conflict', `the change conflicts with the stored state (${code})`);
}

export function zodToError(err: ZodError): ValidationError {
  const issue = err.issues[0];
  if (issue?.code === 'unrecognized_keys') {
    // The field is the unknown key itself (the issue's path is the object holding it).
    const field = [...issue.path.map(String), issue.keys[0] ?? ''].join('.');
    return new ValidationError('UnknownField', `${field}: unknown field (not accepted here)`, field);
  }
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
      let e = err instanceof DroverError ? err : err instanceof ZodError ? zodToError(err) : storeConflict(err);
      if (!e) {
        log.error({ err, method: ctx.method, path: ctx.path }, 'request failed');
        e = new DroverError(500, 'ServerError', 'internal error (see the server log)');
      }
      ctx.status = e.status;
      ctx.body = e.toJSON();
      // Every 401 carries a challenge (RFC 7235 §3.1). The web UI's own calls (x-drover-ui) get a scheme
      // browsers do not know, so that a wrong key shows the UI's error, not the browser's login dialog.
      if (e.status === 401) ctx.set('WWW-Authenticate', `${ctx.get('x-drover-ui') ? 'DroverKey' : 'Basic'} realm="drover"`);
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
