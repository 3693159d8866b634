// Helpers of the DNS integration tests: dig as the client, small upstream servers on loopback.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import dns2 from 'dns2';
export { freePort } from '../helpers/ports.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);

export interface DigRecord {
  name: string;
  ttl: number;
  type: string;
  data: string;
}

export interface DigResult {
  status: string;
  flags: string[];
  answer: DigRecord[];
  authority: DigRecord[];
  additional: DigRecord[];
  /** EDNS present in the reply. */
  edns: boolean;
  /** dig reported it retried over TCP after a truncated UDP reply. */
  retriedTcp: boolean;
  raw: string;
}

function parseRecords(lines: string[]): DigRecord[] {
  return lines
    .filter((l) => l.trim() !== '' && !l.startsWith(';'))
    .map((l) => {
      const [name = '', ttl = '0', , type = '', ...rest] = l.split(/\s+/);
      return { name, ttl: Number(ttl), type, data: rest.join(' ') };
    });
}

export function parseDig(out: string): DigResult {
  const status = /status: (\w+)/.exec(out)?.[1] ?? 'NONE';
  const flags = (/;; flags: ([^;]*);/.exec(out)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  const section = (title: string): DigRecord[] => {
    const i = out.indexOf(`;; ${title} SECTION:`);
    if (i < 0) return [];
    const rest = out.slice(i).split('\n').slice(1);
    const end = rest.findIndex((l) => l.trim() === '');
    return parseRecords(end < 0 ? rest : rest.slice(0, end));
  };
  return {
    status,
    flags,
    answer: section('ANSWER'),
    authority: section('AUTHORITY'),
    additional: section('ADDITIONAL'),
    edns: out.includes('OPT PSEUDOSECTION'),
    retriedTcp: out.includes('retrying in TCP mode'),
    raw: out,
  };
}

export interface DigOptions {
  port: number;
  server?: string;
  /** Source address (a client's managed IP on 127/8). */
  from?: string;
  type?: string;
  extra?: string[];
}

/** Runs dig against our server and parses its output. */
export async function dig(name: string, o: DigOptions): Promise<DigResult> {
  const args = [`@${o.server ?? '127.0.0.1'}`, '-p', String(o.port), '+nocookie', '+time=3', '+tries=1'];
  if (o.from) args.push('-b', o.from);
  args.push(...(o.extra ?? []));
  args.push(name, o.type ?? 'A');
  const { stdout } = await run('dig', args, { timeout: 15_000 });
  return parseDig(stdout);
}

/** dig -x. */
export async function digPtr(ip: string, o: DigOptions): Promise<DigResult> {
  const args = [`@${o.server ?? '127.0.0.1'}`, '-p', String(o.port), '+nocookie', '+time=3', '+tries=1'];
  if (o.from) args.push('-b', o.from);
  args.push('-x', ip);
  const { stdout } = await run('dig', args, { timeout: 15_000 });
  return parseDig(stdout);
}

export function ips(r: DigResult, type = 'A'): string[] {
  return r.answer.filter((x) => x.type === type).map((x) => x.data).sort();
}

// ---------------------------------------------------------------------------------------------------
// A small authoritative upstream on dns2 (the answers are programmable per test).

export interface UpstreamRecord {
  type: 'A' | 'AAAA' | 'CNAME' | 'TXT';
  data: string;
  ttl?: number;
}

export interface FakeUpstream {
  port: number;
  address: string;
  /** Names (lower-case, no trailing dot) → records. Unknown names: NXDOMAIN with an SOA. */
  zone: Map<string, UpstreamRecord[]>;
  /** Every query seen: `${name}/${type}`. */
  queries: string[];
  /** Reply with this rcode to everything (e.g. 2 = SERVFAIL) when set. */
  failWith: number | undefined;
  /** Answer AAAA with NXDOMAIN for names that only have A records (a broken upstream). */
  aaaaNxdomain: boolean;
  /** The AA flag of its replies (default true: an authoritative server; false: a recursive one). */
  aa: boolean;
  close(): Promise<void>;
}

const TYPE_NUM: Record<UpstreamRecord['type'], number> = { A: 1, AAAA: 28, CNAME: 5, TXT: 16 };

/**
 * Starts a dns2 server (UDP + TCP) on address:port (port 0 = ephemeral, same for both). Its UDP side
 * truncates replies over the query's EDNS size, as dns2 does (so big answers exercise TCP retry).
 */
export async function startUpstream(address = '127.0.0.1', port = 0): Promise<FakeUpstream> {
  const { Packet } = dns2;
  const up: Omit<FakeUpstream, 'close' | 'port'> & { port: number } = {
    port: 0,
    address,
    zone: new Map(),
    queries: [],
    failWith: undefined,
    aaaaNxdomain: false,
    aa: true,
  };
  const server = dns2.createServer({
    udp: true,
    tcp: true,
    handle: (request, send) => {
      const response = Packet.createResponseFromRequest(request);
      const q = request.questions[0];
      if (!q) return;
      const name = q.name.toLowerCase().replace(/\.$/, '');
      up.queries.push(`${name}/${q.type}`);
      response.header.ra = 1;
      response.header.aa = up.aa ? 1 : 0;
      if (up.failWith !== undefined) {
        response.header.rcode = up.failWith;
        void send(response);
        return;
      }
      const recs = up.zone.get(name);
      const soa = new Packet.Resource({
        name: 'example.test',
        type: Packet.TYPE.SOA,
        class: Packet.CLASS.IN,
        ttl: 60,
        primary: 'ns.example.test',
        admin: 'hostmaster.example.test',
        serial: 1,
        refresh: 3600,
        retry: 600,
        expiration: 86400,
        minimum: 30,
      });
      if (!recs || (q.type === TYPE_NUM.AAAA && up.aaaaNxdomain && !recs.some((r) => r.type === 'AAAA'))) {
        response.header.rcode = 3; // NXDOMAIN
        response.authorities.push(soa);
        void send(response);
        return;
      }
      // Like an authoritative server: CNAMEs are followed within the zone.
      let owner = q.name;
      let cur: UpstreamRecord[] | undefined = recs;
      for (let hops = 0; cur && hops < 8; hops++) {
        let next: string | undefined;
        for (const r of cur) {
          if (TYPE_NUM[r.type] !== q.type && r.type !== 'CNAME') continue;
          const base = { name: owner, type: TYPE_NUM[r.type], class: Packet.CLASS.IN, ttl: r.ttl ?? 300 };
          if (r.type === 'A' || r.type === 'AAAA') response.answers.push(new Packet.Resource({ ...base, address: r.data }));
          else if (r.type === 'CNAME') {
            response.answers.push(new Packet.Resource({ ...base, domain: r.data }));
            next = r.data;
          } else response.answers.push(new Packet.Resource({ ...base, data: r.data }));
        }
        if (next === undefined || q.type === TYPE_NUM.CNAME) break;
        owner = next;
        cur = up.zone.get(next.toLowerCase().replace(/\.$/, ''));
      }
      if (response.answers.length === 0) response.authorities.push(soa);
      void send(response);
    },
  });
  let lastErr: unknown;
  for (let attempt = 0; attempt < 10; attempt++) {
    const p = port !== 0 ? port : await freePort();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ udp: { port: p, address }, tcp: { port: p, address } }).then(() => {
          server.off('error', reject);
          resolve();
        }, reject);
      });
      up.port = p;
      lastErr = undefined;
      break;
    } catch (err) {
      lastErr = err;
    }
  }
  if (lastErr !== undefined) throw lastErr;
  server.on('error', () => undefined);
  return Object.assign(up, {
    close: async () => {
      await server.close();
    },
  });
}


export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
