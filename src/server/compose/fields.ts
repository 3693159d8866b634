// Parsers for the docker-compose values that have a syntax of their own: ports, volumes, sizes, shell
// command lines, restart policies, network modes, extra hosts and links.
import type { NetworkMode, PortSpec, RestartPolicy } from '../../model/resources.js';
import type { ServiceLinkSpec } from './spec.js';
import { asScalarString, describe, fail, isIpv4, isMap, sub, type Where } from './values.js';

export const SERVICE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9-]*$/;
const ALIAS = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export function isServiceName(name: string): boolean {
  return SERVICE_NAME.test(name) && name.length <= 63;
}

const PORT_SYNTAX = 'expected [[hostIp:]publicPort:]privatePort[/tcp|udp]';
const EXPOSE_SYNTAX = 'expected port[/tcp|udp]';

function portNumber(text: string): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

function portText(where: Where, field: string, value: unknown, what: string): string {
  if (isMap(value)) fail(where, field, `the long ${what} syntax (a map) is not supported yet; write a string like "8080:80/tcp"`);
  if (typeof value !== 'string' && typeof value !== 'number') {
    fail(where, field, `expected a ${what} string or number, got ${describe(value)}`);
  }
  const text = String(value).trim();
  if (/^[\d.:]*\d+-\d+/.test(text) || /:\d+-\d+/.test(text)) fail(where, field, `${describe(text)}: port ranges are not supported yet`);
  return text;
}

function splitProtocol(text: string): { rest: string; protocol: PortSpec['protocol'] | undefined } {
  const slash = text.lastIndexOf('/');
  if (slash < 0) return { rest: text, protocol: 'tcp' };
  const proto = text.slice(slash + 1);
  return { rest: text.slice(0, slash), protocol: proto === 'tcp' || proto === 'udp' ? proto : undefined };
}

/** `ports` entry: `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, `8080:80/udp`. */
export function parsePort(where: Where, field: string, value: unknown): PortSpec {
  const text = portText(where, field, value, 'port');
  const bad = (why = ''): never => fail(where, field, `${describe(text)} is not a valid port spec (${PORT_SYNTAX})${why}`);
  const { rest, protocol } = splitProtocol(text);
  if (!protocol) bad('; the protocol must be tcp or udp');
  const parts = rest.split(':');
  if (parts.length > 3) bad();
  const privatePort = portNumber(parts[parts.length - 1] ?? '') ?? bad('; ports are numbers from 1 to 65535');
  const spec: PortSpec = { privatePort, protocol: protocol ?? 'tcp' };
  if (parts.length === 3) {
    const hostIp = parts[0] ?? '';
    if (!isIpv4(hostIp)) bad(`; ${describe(hostIp)} is not an IPv4 address`);
    spec.hostIp = hostIp;
  }
  if (parts.length >= 2) {
    const publicText = parts[parts.length - 2] ?? '';
    if (publicText !== '' || parts.length === 2) {
      spec.publicPort = portNumber(publicText) ?? bad('; ports are numbers from 1 to 65535');
    }
  }
  return spec;
}

/** `expose` entry: `80` or `80/udp`. */
export function parseExpose(where: Where, field: string, value: unknown): PortSpec {
  const text = portText(where, field, value, 'port');
  const { rest, protocol } = splitProtocol(text);
  const privatePort = portNumber(rest);
  if (!protocol || privatePort === undefined) {
    fail(where, field, `${describe(text)} is not a valid exposed port (${EXPOSE_SYNTAX}; ports are numbers from 1 to 65535)`);
  }
  return { privatePort, protocol };
}

export function formatPort(p: PortSpec): string {
  const proto = p.protocol === 'udp' ? '/udp' : '';
  if (p.hostIp !== undefined) return `${p.hostIp}:${p.publicPort ?? ''}:${p.privatePort}${proto}`;
  if (p.publicPort !== undefined) return `${p.publicPort}:${p.privatePort}${proto}`;
  return `${p.privatePort}${proto}`;
}

const VOLUME_MODES = new Set(['ro', 'rw', 'z', 'Z', 'nocopy']);

/** A volume string, kept verbatim once it is known to be well-formed. */
export function checkVolume(where: Where, field: string, value: unknown): string {
  if (isMap(value)) fail(where, field, 'the long volume syntax (a map) is not supported yet; write "source:/container/path[:mode]"');
  if (typeof value !== 'string' || value.trim() === '') {
    fail(where, field, `expected a volume string ([source:]/container/path[:mode]), got ${describe(value)}`);
  }
  const parts = value.split(':');
  if (parts.length > 3 || parts.some((p) => p === '')) {
    fail(where, field, `${describe(value)} is not a valid volume (expected [source:]/container/path[:mode])`);
  }
  const target = parts.length === 1 ? parts[0] : parts[1];
  if (!target?.startsWith('/')) {
    fail(where, field, `${describe(value)}: the container path ${describe(target)} must be absolute`);
  }
  const mode = parts[2];
  if (mode !== undefined) {
    const flags = mode.split(',');
    const valid =
      flags.every((f) => VOLUME_MODES.has(f)) &&
      new Set(flags).size === flags.length &&
      !(flags.includes('ro') && flags.includes('rw')) &&
      !(flags.includes('z') && flags.includes('Z'));
    if (!valid) {
      fail(where, field, `${describe(value)}: ${describe(mode)} is not a valid volume mode (a comma-separated combination of ro|rw, z|Z, nocopy)`);
    }
  }
  return value;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** A memory size: bytes as a number, or `1024b`, `100k`, `512m`, `1g` (binary units). */
export function parseBytes(where: Where, field: string, value: unknown): number {
  let bytes: number | undefined;
  if (typeof value === 'number' && Number.isInteger(value)) bytes = value;
  else if (typeof value === 'string') {
    const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(value.trim());
    if (m) bytes = Math.floor(Number(m[1]) * (UNITS[(m[2] ?? '').toLowerCase()] ?? 1));
  }
  if (bytes === undefined || bytes <= 0) {
    fail(where, field, `${describe(value)} is not a valid size (expected a positive number of bytes or a size like 1024b, 100k, 512m, 1g)`);
  }
  return bytes;
}

/** Splits a command line like a POSIX shell: whitespace separates, quotes group, `\` escapes. */
export function shellSplit(where: Where, field: string, line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line.charAt(i);
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === '\\' && i + 1 < line.length && '"\\$`\n'.includes(line.charAt(i + 1))) word += line.charAt(++i);
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\') {
      if (i + 1 < line.length) word += line.charAt(++i);
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) fail(where, field, `${describe(line)} has an unterminated ${quote} quote`);
  if (inWord) words.push(word);
  return words;
}

/** `command` / `entrypoint`: a shell-like string or a list of arguments. */
export function parseCommand(where: Where, field: string, value: unknown): string[] {
  if (typeof value === 'string') return shellSplit(where, field, value);
  if (Array.isArray(value)) return value.map((item: unknown, i) => asScalarString(where, sub(field, i), item));
  return fail(where, field, `expected a command string or a list of arguments, got ${describe(value)}`);
}

/** `restart`: `no`, `always`, `on-failure[:N]`, `unless-stopped`. */
export function parseRestart(where: Where, field: string, value: unknown): RestartPolicy {
  const m = typeof value === 'string' ? /^(no|always|unless-stopped|on-failure)(?::(\d+))?$/.exec(value) : null;
  const name = m?.[1];
  if (!m || name === undefined || (m[2] !== undefined && name !== 'on-failure')) {
    return fail(where, field, `${describe(value)} is not a restart policy (accepted: no, always, on-failure[:N], unless-stopped)`);
  }
  const policy: RestartPolicy = { name: name as RestartPolicy['name'] };
  if (m[2] !== undefined) policy.maximumRetryCount = Number(m[2]);
  return policy;
}

export function formatRestart(p: RestartPolicy): string {
  return p.maximumRetryCount === undefined ? p.name : `${p.name}:${p.maximumRetryCount}`;
}

/** `network_mode` / `net`: `managed` (the default), `bridge`, `host`, `none`, `container:<name>`. */
export function parseNetworkMode(where: Where, field: string, value: unknown): NetworkMode {
  if (typeof value === 'string') {
    if (value === 'managed' || value === 'bridge' || value === 'host' || value === 'none') return value;
    if (/^container:.+$/.test(value)) return value;
  }
  return fail(where, field, `${describe(value)} is not a network mode (accepted: managed, bridge, host, none, container:<name>)`);
}

/** `extra_hosts`: a list of `host:ip` or a map `host: ip`, as a `host:ip` list. */
export function parseExtraHosts(where: Where, field: string, value: unknown): string[] {
  const entries: [string, string][] = [];
  if (Array.isArray(value)) {
    value.forEach((item: unknown, i) => entries.push([asScalarString(where, sub(field, i), item), sub(field, i)]));
  } else if (isMap(value)) {
    for (const [host, ip] of Object.entries(value)) {
      entries.push([`${host}:${asScalarString(where, sub(field, host), ip)}`, sub(field, host)]);
    }
  } else {
    fail(where, field, `expected a list of host:ip or a map, got ${describe(value)}`);
  }
  return entries.map(([entry, f]) => {
    const colon = entry.indexOf(':');
    if (colon <= 0 || colon === entry.length - 1) fail(where, f, `${describe(entry)} is not a host entry (expected host:ip)`);
    return entry;
  });
}

/** `links` entry `svc[:alias]`, or `external_links` entry `stack/svc[:alias]`. */
export function parseLink(where: Where, field: string, value: unknown, external: boolean): ServiceLinkSpec {
  const syntax = external ? 'stack/service[:alias]' : 'service[:alias]';
  const m = typeof value === 'string' ? /^(?:([^/:]+)\/)?([^/:]+)(?::([^/:]+))?$/.exec(value) : null;
  const [, stack, service = '', alias] = m ?? [];
  const ok =
    m !== null &&
    isServiceName(service) &&
    (external ? stack !== undefined && isServiceName(stack) : stack === undefined) &&
    (alias === undefined || ALIAS.test(alias));
  if (!ok) {
    const hint = !external && m && stack !== undefined ? '; links to other stacks go in external_links' : '';
    fail(where, field, `${describe(value)} is not a valid link (expected ${syntax}${hint})`);
  }
  const link: ServiceLinkSpec = { service };
  if (stack !== undefined) link.stack = stack;
  if (alias !== undefined) link.alias = alias;
  return link;
}

export function formatLink(link: ServiceLinkSpec): string {
  return `${link.stack === undefined ? '' : `${link.stack}/`}${link.service}${link.alias === undefined ? '' : `:${link.alias}`}`;
}
