// rancher-compose `request_line`, as HAProxy's `option httpchk` reads it (that is what Rancher 1.x fed
// it to): `<method> <uri> [<version>]`, or a lone `<uri>` (method OPTIONS). Parts may be in double
// quotes (`GET "/healthcheck" "HTTP/1.0"`, the Rancher UI's form) and may use HAProxy's escapes (`\ `,
// `\r`, `\n`, `\t`, `\\`, `\"`); the version may carry extra header lines that way
// (`HTTP/1.1\r\nHost:\ example.com`). One pass over the text; bad input is an error that names it.

export interface HttpCheckRequest {
  method: string;
  uri: string;
  version: string;
  /** Extra header lines given after the version (without CRLFs), in order. */
  headers: string[];
}

export class RequestLineError extends Error {
  constructor(readonly requestLine: string, reason: string) {
    super(`health check request_line ${JSON.stringify(requestLine.slice(0, 200))}: ${reason}`);
    this.name = 'RequestLineError';
  }
}

const MAX_LENGTH = 4096;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const ESCAPES: Record<string, string> = { ' ': ' ', r: '\r', n: '\n', t: '\t', '\\': '\\', '"': '"' };

/** Splits into words on unquoted, unescaped blanks, unquoting and unescaping each (linear). */
function words(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (ch === '\\' && i + 1 < line.length) {
      const e = ESCAPES[line[i + 1] as string];
      if (e !== undefined) {
        cur += e;
        inWord = true;
        i++;
        continue;
      }
    }
    if (ch === '"') {
      quoted = !quoted;
      inWord = true;
      continue;
    }
    if (!quoted && (ch === ' ' || ch === '\t')) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
      continue;
    }
    cur += ch;
    inWord = true;
  }
  if (quoted) throw new RequestLineError(line, 'a double quote is not closed');
  if (inWord) out.push(cur);
  return out;
}

function hasBlankOrControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return true;
  }
  return false;
}

export function parseRequestLine(line: string): HttpCheckRequest {
  if (line.length > MAX_LENGTH) throw new RequestLineError(line, `longer than ${MAX_LENGTH} characters`);
  const w = words(line.trim());
  if (w.length === 0) throw new RequestLineError(line, 'is empty');
  if (w.length > 3) throw new RequestLineError(line, 'has more than three parts (method, URI, version); quote or escape blanks (\\ )');
  const [method, uri, versionAndHeaders] = w.length === 1 ? ['OPTIONS', w[0] as string, undefined] : (w as [string, string, string?]);
  if (!TOKEN.test(method)) throw new RequestLineError(line, `${JSON.stringify(method)} is not an HTTP method`);
  if (uri === '' || hasBlankOrControl(uri)) throw new RequestLineError(line, 'the URI is empty or has blanks or control characters');
  const [version = 'HTTP/1.0', ...rest] = (versionAndHeaders ?? 'HTTP/1.0').split('\r\n');
  if (!/^HTTP\/1\.[01]$/.test(version)) throw new RequestLineError(line, `${JSON.stringify(version)} is not HTTP/1.0 or HTTP/1.1`);
  const headers = rest.filter((h) => h !== '');
  for (const h of headers) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*$/.test(h)) throw new RequestLineError(line, `${JSON.stringify(h)} is not a header line`);
  }
  return { method, uri, version, headers };
}

/** The bytes sent for a check: the request, a Host header unless given, and `Connection: close`. */
export function requestBytes(req: HttpCheckRequest, host: string, port: number): Buffer {
  const lines = [`${req.method} ${req.uri} ${req.version}`, ...req.headers];
  const has = (name: string) => req.headers.some((h) => h.slice(0, h.indexOf(':')).trim().toLowerCase() === name);
  if (!has('host')) lines.push(`Host: ${host}:${port}`);
  if (!has('connection')) lines.push('Connection: close');
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}
