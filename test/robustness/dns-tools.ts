// Helpers of the DNS robustness tests: a DnsServer with some data, small UDP/TCP clients on our own
// codec (wire.ts, read-only use), an answering upstream (dnsmasq), raw UDP with source port 0 (python3).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { parseAnswers } from '../../src/dns/answers.js';
import { buildDnsDataFromAnswers } from '../../src/dns/view.js';
import type { DnsData } from '../../src/dns/data.js';
import { buildQuery, encodeQuestion, TYPE } from '../../src/dns/wire.js';
import type { Logger } from '../../src/common/log.js';
import { freePort } from '../helpers/ports.js';
import { eventually } from '../helpers/wait.js';

const run = promisify(execFile);

export { freePort };

/** Local data: a few names under rancher.internal (one with 100 A records: a ~1.7 KB TCP reply), recursion to `upstream`. */
export function robustData(upstream: string, blackhole?: string): DnsData {
  const big = Array.from({ length: 100 }, (_, i) => `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`);
  const sections: Record<string, unknown> = {
    default: {
      authoritative: ['rancher.internal'],
      search: ['app.rancher.internal', 'rancher.internal'],
      recurse: [upstream],
      a: {
        'web.app.rancher.internal.': { answer: ['10.0.0.5', '10.0.0.6'] },
        'db.rancher.internal.': { answer: ['10.0.0.7'] },
        'big.rancher.internal.': { answer: big },
      },
      cname: { 'alias.rancher.internal.': { answer: 'web.app.rancher.internal.' } },
      txt: { 'txt.rancher.internal.': { answer: ['v=1', 'hello world'] } },
    },
  };
  // A client whose upstream never answers (its recursed queries stay in flight until the timeout).
  if (blackhole) sections['127.0.0.3'] = { recurse: [blackhole], a: { 'local.rancher.internal.': { answer: ['10.0.0.9'] } } };
  return buildDnsDataFromAnswers(parseAnswers(JSON.stringify(sections)));
}

/** A logger that keeps its records (to assert that nothing was logged at error level). */
export function recordingLogger(): { log: Logger; lines: Record<string, unknown>[]; errors: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const log = pino({ level: 'warn' }, sink); // warnings and errors only: a run of 200k queries must not keep its debug lines
  return { log, lines, errors: () => lines.filter((l) => Number(l.level) >= 50) };
}

export function query(name: string, type: number = TYPE.A, id = Math.floor(Math.random() * 65536), edns = 1232): Buffer {
  return buildQuery(id, encodeQuestion(name, type), edns);
}

export interface Answer {
  id: number;
  rcode: number;
  ancount: number;
  tc: boolean;
  bytes: number;
}

export function summary(msg: Buffer): Answer {
  return { id: msg.readUInt16BE(0), rcode: msg[3]! & 0xf, ancount: msg.readUInt16BE(6), tc: (msg[2]! & 0x02) !== 0, bytes: msg.length };
}

/** One UDP query (retried `tries` times after `timeoutMs` of silence); rejects when never answered. */
export async function udpAsk(port: number, name: string, opts: { type?: number; timeoutMs?: number; tries?: number; host?: string } = {}): Promise<Answer & { ms: number }> {
  const sock = dgram.createSocket('udp4');
  const id = Math.floor(Math.random() * 65536);
  const msg = query(name, opts.type ?? TYPE.A, id);
  const t0 = performance.now();
  try {
    return await new Promise((resolve, reject) => {
      let left = opts.tries ?? 3;
      let timer: NodeJS.Timeout | undefined;
      const fire = (): void => {
        if (left-- <= 0) {
          reject(new Error(`no UDP answer for ${name} from port ${port} after ${Math.round(performance.now() - t0)} ms`));
          return;
        }
        sock.send(msg, port, opts.host ?? '127.0.0.1');
        timer = setTimeout(fire, opts.timeoutMs ?? 1000);
      };
      sock.on('message', (m) => {
        if (m.length < 12 || m.readUInt16BE(0) !== id) return;
        clearTimeout(timer);
        resolve({ ...summary(m), ms: performance.now() - t0 });
      });
      sock.on('error', reject);
      fire();
    });
  } finally {
    sock.close();
  }
}

/** Splits a TCP byte stream into DNS messages. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  readonly messages: Buffer[] = [];
  constructor(private readonly onMessage: (m: Buffer) => void = () => undefined) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 2) {
      const n = this.buf.readUInt16BE(0);
      if (this.buf.length < 2 + n) break;
      const m = this.buf.subarray(2, 2 + n);
      this.buf = this.buf.subarray(2 + n);
      this.messages.push(m);
      this.onMessage(m);
    }
  }
}

export function frame(msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  msg.copy(out, 2);
  return out;
}

export function connect(port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Resolves when the server closed the socket (FIN or reset); with how long it took. */
export function closedBy(s: net.Socket): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    if (s.destroyed) return resolve(0);
    s.on('error', () => undefined);
    s.once('close', () => resolve(performance.now() - t0));
    s.once('end', () => s.destroy());
    s.resume(); // reading, so that a FIN or a reset is seen
  });
}

/**
 * Sends `payloads` on a fresh TCP connection (written as given: frames or raw bytes), half-closes when
 * `end`, and collects replies until `expect` have come or the server closes; rejects after timeoutMs.
 */
export async function tcpExchange(
  port: number,
  payloads: Buffer[],
  opts: { expect: number; end?: boolean; timeoutMs?: number; localAddress?: string },
): Promise<{ replies: Answer[]; closed: boolean }> {
  const s = await connect(port, opts.localAddress);
  const replies: Answer[] = [];
  let closed = false;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`TCP: ${replies.length}/${opts.expect} replies after ${opts.timeoutMs ?? 5000} ms`)),
        opts.timeoutMs ?? 5000,
      );
      const reader = new FrameReader((m) => {
        replies.push(summary(m));
        if (replies.length >= opts.expect && !opts.end) {
          clearTimeout(timer);
          resolve();
        }
      });
      s.on('data', (c: Buffer) => reader.push(c));
      s.on('error', () => undefined);
      s.on('close', () => {
        closed = true;
        clearTimeout(timer);
        if (replies.length >= opts.expect) resolve();
        else reject(new Error(`TCP: closed after ${replies.length}/${opts.expect} replies`));
      });
      for (const p of payloads) s.write(p);
      if (opts.end) s.end();
    });
  } finally {
    s.destroy();
  }
  return { replies, closed };
}

export function rssMiB(): number {
  return process.memoryUsage.rss() / 1048576;
}

/** dnsmasq on 127.0.0.1:port answering every A query with 192.0.2.1 (the fuzz tests' upstream). */
export async function startDnsmasq(): Promise<{ port: number; proc: ChildProcess; close: () => Promise<void> }> {
  const port = await freePort();
  const proc = spawn(
    'dnsmasq',
    ['-k', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${port}`,
      '--address=/#/192.0.2.1', '--cache-size=0', '--user=root', '--group=root', '--pid-file', '--dns-forward-max=10000'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  await eventually(async () => (await udpAsk(port, 'probe.example', { timeoutMs: 200, tries: 1 })).rcode === 0, 5000, `dnsmasq answering (${err})`);
  return {
    port,
    proc,
    close: async () => {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** Sends UDP datagrams with source port 0 from 127.0.0.1 to port (a raw socket, python3; needs root/CAP_NET_RAW). */
export async function sendFromPortZero(port: number, payloads: Buffer[]): Promise<void> {
  const script = `
import socket, sys, binascii
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
port = int(sys.argv[1])
for h in sys.argv[2:]:
    p = binascii.unhexlify(h)
    hdr = (0).to_bytes(2, 'big') + port.to_bytes(2, 'big') + (8 + len(p)).to_bytes(2, 'big') + (0).to_bytes(2, 'big')
    s.sendto(hdr + p, ('127.0.0.1', 0))
`;
  await run('python3', ['-c', script, String(port), ...payloads.map((p) => p.toString('hex'))], { timeout: 10_000 });
}

/** The CPU-bomb messages of the TCP tests and bench: */
export interface BombMessages {
  /** A bare header claiming 0xFFFF records in each of its four sections. */
  header: Buffer;
  /** A 64 KiB message whose records are a chain of compression pointers, each to the one before. */
  chain: Buffer;
  /** 64 KiB of pseudo-random bytes with the QR bit clear (a "query", so nothing stops before parsing). */
  garbage: Buffer;
}

export function bombMessages(): BombMessages {
  const header = Buffer.from([0x12, 0x34, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  const chain = Buffer.alloc(65535);
  header.copy(chain, 0);
  chain.set([1, 0x61, 0, 0, 1, 0, 1], 12);
  for (let p = 19, prev = 12; p + 12 <= chain.length; prev = p, p += 12) {
    chain[p] = 0xc0 | (prev >> 8);
    chain[p + 1] = prev & 0xff;
    chain.writeUInt16BE(TYPE.A, p + 2);
    chain.writeUInt16BE(1, p + 4);
  }
  const garbage = Buffer.alloc(65535);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 2654435761) >>> 24;
  garbage.writeUInt16BE(0, 2);
  return { header, chain, garbage };
}
