// Bounds on what a resource may hold. API bodies and compose files are checked against them at the
// edge, so a hostile or mistaken input gets a 4xx naming the field instead of a stall or a crash.
// `maxScale` and `maxContainersPerEnvironment` can be lowered or raised with DROVER_MAX_SCALE and
// DROVER_MAX_CONTAINERS (read once at start).

function fromEnv(name: string, def: number): number {
  const raw = typeof process !== 'undefined' ? process.env[name] : undefined;
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n > 0 ? n : def;
}

const MAX_JSON_DEPTH = 64;

export const LIMITS = {
  /** Containers per service (`scale`). */
  maxScale: fromEnv('DROVER_MAX_SCALE', 1000),
  /** Containers of one environment, all services together (checked when services are created or scaled). */
  maxContainersPerEnvironment: fromEnv('DROVER_MAX_CONTAINERS', 20_000),
  /** Characters of one free-text field (a command argument, an environment value, a label, …). */
  maxString: 65_536,
  /** Characters of a name (hosts, stacks, keys, certificates, …). */
  maxName: 255,
  /** Entries of one list (ports, volumes, command, …). */
  maxList: 1024,
  /** Entries of one map (environment, labels). */
  maxMap: 4096,
  /** Nesting of free-form JSON (service metadata), counted from the field: `{}` is 1, `{"a": {}}` is 2. */
  maxJsonDepth: MAX_JSON_DEPTH,
  /** Nesting of a whole request body or compose file: room for the resource's own structure around free-form JSON. */
  maxDocumentDepth: MAX_JSON_DEPTH + 8,
  /** Bytes of one API request body (413 beyond). */
  maxBodyBytes: 8 * 1024 * 1024,
  /** Size of free-form JSON (service metadata): characters of keys and strings plus 8 per other value. */
  maxJsonBytes: 1 << 20,
  /** A container's drain before it is stopped (agent.drainMs, a service's drain_timeout_ms): 10 minutes. */
  maxDrainMs: 600_000,
} as const;

export type JsonPath = (string | number)[];

export interface JsonProblem {
  /** Where the problem is, from the root given. */
  path: JsonPath;
  kind: 'depth' | 'size' | 'cycle' | 'protoKey';
  message: string;
}

export interface JsonTreeLimits {
  maxDepth: number;
  maxBytes?: number;
  /** Reject `__proto__` as a key (it would set the prototype of the object built from it). */
  forbidProtoKey?: boolean;
}

/**
 * The first problem of a JSON-like tree: nested deeper than `maxDepth`, larger than `maxBytes`, a
 * cycle (what a recursive YAML alias makes) or a `__proto__` key. Iterative, so any depth is safe to
 * check; it never looks below `maxDepth`, so the work is bounded by the size of what is allowed.
 */
export function jsonTreeProblem(root: unknown, limits: JsonTreeLimits): JsonProblem | undefined {
  type Item = { value: unknown; depth: number; path: JsonPath; exit: boolean };
  const stack: Item[] = [{ value: root, depth: 1, path: [], exit: false }];
  const onPath = new Set<object>();
  let bytes = 0;
  const maxBytes = limits.maxBytes ?? Infinity;
  while (stack.length > 0) {
    const item = stack.pop() as Item;
    const v = item.value;
    if (item.exit) {
      onPath.delete(v as object);
      continue;
    }
    if (typeof v === 'string') bytes += v.length + 2;
    else bytes += 8;
    if (bytes > maxBytes) {
      return { path: item.path, kind: 'size', message: `is larger than ${maxBytes} bytes` };
    }
    if (typeof v !== 'object' || v === null) continue;
    if (onPath.has(v)) {
      return { path: item.path, kind: 'cycle', message: 'contains itself (a recursive alias or reference)' };
    }
    if (item.depth > limits.maxDepth) {
      return { path: item.path, kind: 'depth', message: `is nested deeper than ${limits.maxDepth} levels` };
    }
    onPath.add(v);
    stack.push({ value: v, depth: item.depth, path: item.path, exit: true });
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i] as unknown, depth: item.depth + 1, path: [...item.path, i], exit: false });
    } else {
      const keys = Object.keys(v);
      for (let i = keys.length - 1; i >= 0; i--) {
        const k = keys[i] as string;
        if (limits.forbidProtoKey && k === '__proto__') {
          return { path: [...item.path, k], kind: 'protoKey', message: 'uses the reserved key "__proto__"' };
        }
        bytes += k.length;
        stack.push({ value: (v as Record<string, unknown>)[k], depth: item.depth + 1, path: [...item.path, k], exit: false });
      }
    }
  }
  return undefined;
}

/** The first problem of free-form metadata against maxJsonDepth, maxJsonBytes and `__proto__` keys. */
export function metadataProblem(m: unknown): JsonProblem | undefined {
  return jsonTreeProblem(m, { maxDepth: LIMITS.maxJsonDepth, maxBytes: LIMITS.maxJsonBytes, forbidProtoKey: true });
}

/** `a.b[2].c` for messages and `fieldName`; long paths keep their start and say how deep they go. */
export function formatJsonPath(path: JsonPath, prefix = ''): string {
  const shown = path.length > 8 ? path.slice(0, 8) : path;
  let out = prefix;
  for (const p of shown) out = typeof p === 'number' ? `${out}[${p}]` : out === '' ? p : `${out}.${p}`;
  return path.length > 8 ? `${out}…(${path.length} levels)` : out;
}
