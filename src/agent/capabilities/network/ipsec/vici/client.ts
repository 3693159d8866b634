// A small typed VICI client over charon's unix socket. VICI is sequential: one operation (a command,
// or an event (un)registration) is in flight at a time, the others wait in a queue. Streamed commands
// (list-sas, list-conns, list-certs) deliver their results as EVENTs between the registration and the
// command's response; they are collected here. Subscriptions (ike-updown, child-updown) stay registered
// and are re-registered after a reconnect (charon restarted). Every operation has a timeout; on a
// timeout the connection is dropped (a late answer must not be taken for the next one's).
import { connect, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { z } from 'zod';
import {
  FrameReader,
  PacketType,
  ViciProtocolError,
  decodePacket,
  encodePacket,
  toStrings,
  type ViciInput,
  type ViciMessage,
  type ViciPacket,
  type ViciRawMessage,
} from './codec.js';

export class ViciConnectionError extends Error {
  readonly code = 'ViciConnection';
  constructor(message: string) {
    super(message);
    this.name = 'ViciConnectionError';
  }
}

export class ViciTimeoutError extends Error {
  readonly code = 'ViciTimeout';
  constructor(what: string, ms: number) {
    super(`VICI ${what}: no answer from charon within ${ms} ms (connection dropped)`);
    this.name = 'ViciTimeoutError';
  }
}

/** charon answered `success = no` (or does not know the command). */
export class ViciCommandError extends Error {
  readonly code = 'ViciCommand';
  constructor(
    readonly command: string,
    readonly errmsg: string,
    readonly response?: ViciMessage,
  ) {
    super(`VICI ${command} failed: ${errmsg}`);
    this.name = 'ViciCommandError';
  }
}

export interface ViciClientOptions {
  /** Path of charon's vici socket (charon.plugins.vici.socket without `unix://`). */
  socketPath: string;
  /** Per-operation timeout; default 10 s. */
  timeoutMs?: number;
  /** Delay between reconnect attempts while subscriptions exist; default 500 ms. */
  reconnectDelayMs?: number;
}

type Waiting = {
  want: 'response' | 'confirm';
  resolve: (p: ViciPacket) => void;
  reject: (e: Error) => void;
  /** Streamed command: the event name whose packets are collected. */
  stream?: string;
  collected?: ViciRawMessage[];
};

export type ViciEventHandler = (event: string, message: ViciMessage) => void;

/**
 * Events: 'connect' (after every (re)connect, with subscriptions re-registered — a charon restart shows
 * up as a second 'connect'), 'disconnect' (Error), 'event' (name, message) for subscribed events.
 */
export class ViciClient extends EventEmitter {
  private sock: Socket | undefined;
  private connecting: Promise<Socket> | undefined;
  private reader = new FrameReader();
  private waiting: Waiting | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly subscriptions = new Set<string>();
  /** Events registered on the current connection (reset on every new connection). */
  private registered = new Set<string>();
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly timeoutMs: number;

  constructor(private readonly o: ViciClientOptions) {
    super();
    this.timeoutMs = o.timeoutMs ?? 10_000;
  }

  get connected(): boolean {
    return this.sock !== undefined;
  }

  /** Raw command: the response message (success is not checked, see `call`). */
  request(command: string, message?: ViciInput, opts: { timeoutMs?: number } = {}): Promise<ViciRawMessage> {
    return this.exclusive(async () => {
      const sock = await this.ensure();
      const p = await this.await(sock, encodePacket(PacketType.CMD_REQUEST, command, message), 'response', command, opts.timeoutMs);
      if (p.type === PacketType.CMD_UNKNOWN) throw new ViciCommandError(command, 'unknown command (charon too old or vici plugin missing it)');
      return p.message ?? (Object.create(null) as ViciRawMessage);
    });
  }

  /** Command with `success` checked: ViciCommandError with charon's errmsg when it says no. */
  async call(command: string, message?: ViciInput, opts: { timeoutMs?: number } = {}): Promise<ViciMessage> {
    const r = toStrings(await this.request(command, message, opts));
    if (r.success !== undefined && r.success !== 'yes') {
      throw new ViciCommandError(command, typeof r.errmsg === 'string' ? r.errmsg : 'success = no (no errmsg)', r);
    }
    return r;
  }

  /** Streamed command: registers for `event`, runs `command`, returns the events delivered in between. */
  stream(command: string, event: string, message?: ViciInput, opts: { timeoutMs?: number } = {}): Promise<{ events: ViciRawMessage[]; response: ViciRawMessage }> {
    return this.exclusive(async () => {
      const sock = await this.ensure();
      await this.register(sock, PacketType.EVENT_REGISTER, event, opts.timeoutMs);
      try {
        const collected: ViciRawMessage[] = [];
        const p = await this.await(sock, encodePacket(PacketType.CMD_REQUEST, command, message), 'response', command, opts.timeoutMs, { stream: event, collected });
        if (p.type === PacketType.CMD_UNKNOWN) throw new ViciCommandError(command, 'unknown command');
        const response = p.message ?? (Object.create(null) as ViciRawMessage);
        const r = toStrings(response);
        if (r.success !== undefined && r.success !== 'yes') throw new ViciCommandError(command, typeof r.errmsg === 'string' ? r.errmsg : 'success = no', r);
        return { events: collected, response };
      } finally {
        if (this.sock === sock && !this.subscriptions.has(event)) await this.register(sock, PacketType.EVENT_UNREGISTER, event, opts.timeoutMs).catch(() => undefined);
      }
    });
  }

  /** Subscribes to an event (kept across reconnects); events arrive as 'event' (name, message). */
  async subscribe(event: string): Promise<void> {
    if (this.subscriptions.has(event)) return;
    this.subscriptions.add(event);
    await this.exclusive(async () => {
      const sock = await this.ensure();
      // a connection opened by ensure() has already registered every subscription (resubscribe);
      // registering twice would make charon deliver each event twice
      if (this.registered.has(event)) return;
      await this.register(sock, PacketType.EVENT_REGISTER, event);
      this.registered.add(event);
    });
  }

  async unsubscribe(event: string): Promise<void> {
    if (!this.subscriptions.delete(event)) return;
    if (!this.sock) return;
    await this.exclusive(async () => {
      if (this.sock && this.registered.delete(event)) await this.register(this.sock, PacketType.EVENT_UNREGISTER, event);
    });
  }

  /** Makes a closed client usable again (the next operation connects anew). */
  reopen(): void {
    this.closed = false;
  }

  /** Closes the connection for good (pending operations fail); `reopen` undoes it. */
  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.drop(new ViciConnectionError('client closed'));
  }

  // ------------------------------------------------------------------------------------------ internals

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async register(sock: Socket, type: PacketType, event: string, timeoutMs?: number): Promise<void> {
    const what = `${type === PacketType.EVENT_REGISTER ? 'register' : 'unregister'} ${event}`;
    const p = await this.await(sock, encodePacket(type, event), 'confirm', what, timeoutMs);
    if (p.type === PacketType.EVENT_UNKNOWN) throw new ViciCommandError(what, `charon does not know the event ${JSON.stringify(event)}`);
  }

  private await(sock: Socket, packet: Buffer, want: Waiting['want'], what: string, timeoutMs = this.timeoutMs, extra: Partial<Waiting> = {}): Promise<ViciPacket> {
    return new Promise<ViciPacket>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new ViciTimeoutError(what, timeoutMs));
        this.drop(new ViciConnectionError(`timed out waiting for ${what}`));
      }, timeoutMs);
      this.waiting = {
        want,
        ...extra,
        resolve: (p) => {
          clearTimeout(timer);
          resolve(p);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      sock.write(packet);
    });
  }

  private ensure(): Promise<Socket> {
    if (this.closed) return Promise.reject(new ViciConnectionError('client closed'));
    if (this.sock) return Promise.resolve(this.sock);
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private open(): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const sock = connect(this.o.socketPath);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new ViciConnectionError(`connecting to ${this.o.socketPath} timed out`));
      }, this.timeoutMs);
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(new ViciConnectionError(`cannot connect to charon's vici socket ${this.o.socketPath}: ${err.message}`));
      });
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        this.reader = new FrameReader();
        this.sock = sock;
        sock.on('data', (d: Buffer) => this.onData(sock, d));
        sock.on('error', (err) => this.drop(new ViciConnectionError(`vici socket error: ${err.message}`), sock));
        sock.on('close', () => this.drop(new ViciConnectionError('charon closed the vici connection'), sock));
        // re-register subscriptions before anybody else talks on the new connection
        void this.resubscribe(sock).then(
          () => {
            this.emit('connect');
            resolve(sock);
          },
          (err: unknown) => {
            this.drop(err instanceof Error ? err : new ViciConnectionError(String(err)), sock);
            reject(err instanceof Error ? err : new ViciConnectionError(String(err)));
          },
        );
      });
    });
  }

  private async resubscribe(sock: Socket): Promise<void> {
    this.registered = new Set();
    for (const ev of this.subscriptions) {
      await this.register(sock, PacketType.EVENT_REGISTER, ev);
      this.registered.add(ev);
    }
  }

  private onData(sock: Socket, d: Buffer): void {
    let bodies: Buffer[];
    try {
      bodies = this.reader.push(d);
    } catch (err) {
      this.drop(err as ViciProtocolError, sock);
      return;
    }
    for (const body of bodies) {
      let p: ViciPacket;
      try {
        p = decodePacket(body);
      } catch (err) {
        this.drop(err as ViciProtocolError, sock);
        return;
      }
      this.dispatch(sock, p);
    }
  }

  private dispatch(sock: Socket, p: ViciPacket): void {
    const w = this.waiting;
    if (p.type === PacketType.EVENT) {
      if (w?.stream !== undefined && p.name === w.stream && p.message) {
        w.collected?.push(p.message);
        return;
      }
      if (p.name !== undefined && this.subscriptions.has(p.name)) this.emit('event', p.name, toStrings(p.message ?? (Object.create(null) as ViciRawMessage)));
      return;
    }
    const isResponse = p.type === PacketType.CMD_RESPONSE || p.type === PacketType.CMD_UNKNOWN;
    const isConfirm = p.type === PacketType.EVENT_CONFIRM || p.type === PacketType.EVENT_UNKNOWN;
    if (!w || (w.want === 'response' && !isResponse) || (w.want === 'confirm' && !isConfirm)) {
      this.drop(new ViciProtocolError(`unexpected packet type ${p.type} from charon`), sock);
      return;
    }
    this.waiting = undefined;
    w.resolve(p);
  }

  private drop(err: Error, which?: Socket): void {
    const sock = this.sock;
    if (which && sock !== which) return;
    this.sock = undefined;
    if (sock) {
      sock.removeAllListeners('data');
      sock.destroy();
      this.emit('disconnect', err);
    }
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(err);
    if (sock && !this.closed && this.subscriptions.size > 0) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.closed) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed || this.sock) return;
      this.exclusive(() => this.ensure()).catch(() => this.scheduleReconnect());
    }, this.o.reconnectDelayMs ?? 500);
    this.reconnectTimer.unref();
  }
}

// -------------------------------------------------------------------------------------- typed wrappers

const str = z.string();
const strList = z.array(z.string());

export const ViciVersion = z.object({ daemon: str, version: str, sysname: str, release: str, machine: str }).loose();
export type ViciVersion = z.infer<typeof ViciVersion>;

const ChildSa = z
  .object({
    name: str,
    uniqueid: str,
    reqid: str.optional(),
    state: str,
    mode: str.optional(),
    protocol: str.optional(),
    encap: str.optional(),
    'spi-in': str.optional(),
    'spi-out': str.optional(),
    'bytes-in': str.optional(),
    'bytes-out': str.optional(),
    'packets-in': str.optional(),
    'packets-out': str.optional(),
    'local-ts': strList.optional(),
    'remote-ts': strList.optional(),
  })
  .loose();
export type ChildSa = z.infer<typeof ChildSa>;

const IkeSa = z
  .object({
    uniqueid: str,
    version: str.optional(),
    state: str,
    'local-host': str.optional(),
    'remote-host': str.optional(),
    'local-id': str.optional(),
    'remote-id': str.optional(),
    initiator: str.optional(),
    'nat-remote': str.optional(),
    'nat-any': str.optional(),
    'child-sas': z.record(z.string(), ChildSa).optional(),
  })
  .loose();
export type IkeSa = z.infer<typeof IkeSa> & { name: string };

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new ViciProtocolError(`unexpected ${what} from charon: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** Certificate types as vici names them (list-certs, flush-certs). */
export type ViciCertType = 'ANY' | 'X509' | 'X509_AC' | 'X509_CRL' | 'OCSP_RESPONSE' | 'PUBKEY';

/** The commands the agent uses, typed. */
export class Vici {
  constructor(readonly client: ViciClient) {}

  async version(): Promise<ViciVersion> {
    return parse(ViciVersion, await this.client.call('version'), 'version');
  }

  async stats(): Promise<ViciMessage> {
    return this.client.call('stats');
  }

  /** Loads (or replaces) connections: `conns` is { <name>: <connection section> }. One call per connection. */
  async loadConn(conns: Record<string, ViciInput>): Promise<void> {
    for (const [name, conn] of Object.entries(conns)) await this.client.call('load-conn', { [name]: conn });
  }

  async unloadConn(name: string): Promise<void> {
    await this.client.call('unload-conn', { name });
  }

  /** Names of the connections charon has loaded over vici. */
  async getConns(): Promise<string[]> {
    const r = await this.client.call('get-conns');
    const conns = r.conns;
    return Array.isArray(conns) ? conns : [];
  }

  /** The loaded connections in detail (list-conns events), by name. */
  async listConns(ike?: string): Promise<Record<string, ViciMessage>> {
    const { events } = await this.client.stream('list-conns', 'list-conn', ike ? { ike } : undefined);
    const out: Record<string, ViciMessage> = {};
    for (const e of events) for (const [name, v] of Object.entries(toStrings(e))) if (typeof v === 'object' && !Array.isArray(v)) out[name] = v;
    return out;
  }

  /** IKE_SAs (with their CHILD_SAs), optionally of one connection. */
  async listSas(filter: { ike?: string; ikeId?: number } = {}): Promise<IkeSa[]> {
    // noblock: without it charon waits for every IKE_SA that is busy (checked out, e.g. retransmitting
    // to a dead peer), which can hold the (sequential) vici connection for many seconds
    const msg: ViciInput = { noblock: 'yes' };
    if (filter.ike) msg.ike = filter.ike;
    if (filter.ikeId !== undefined) msg['ike-id'] = String(filter.ikeId);
    const { events } = await this.client.stream('list-sas', 'list-sa', msg);
    const out: IkeSa[] = [];
    for (const e of events) {
      for (const [name, v] of Object.entries(toStrings(e))) out.push({ ...parse(IkeSa, v, `list-sa ${name}`), name });
    }
    return out;
  }

  /** Certificates charon holds (DER in `data`), optionally of one type. */
  async listCerts(filter: { type?: ViciCertType; flag?: 'NONE' | 'CA' | 'AA' | 'OCSP' | 'ANY' } = {}): Promise<{ type: string; flag: string; data: Buffer; hasPrivkey: boolean }[]> {
    const { events } = await this.client.stream('list-certs', 'list-cert', { ...filter });
    return events.map((e) => ({
      type: Buffer.isBuffer(e.type) ? e.type.toString() : '',
      flag: Buffer.isBuffer(e.flag) ? e.flag.toString() : '',
      data: Buffer.isBuffer(e.data) ? e.data : Buffer.alloc(0),
      hasPrivkey: Buffer.isBuffer(e.has_privkey) && e.has_privkey.toString() === 'yes',
    }));
  }

  /**
   * Initiates a CHILD_SA (and its IKE_SA). Never blocks forever: charon is told `timeout` and our own
   * timer is a bit longer. `timeoutMs: 0` = fire and forget on charon's side (returns at once).
   */
  async initiate(o: { child?: string; ike?: string; timeoutMs?: number }): Promise<void> {
    const t = o.timeoutMs ?? 10_000;
    const msg: ViciInput = { timeout: String(t === 0 ? -1 : t), 'init-limits': 'no' };
    if (o.child) msg.child = o.child;
    if (o.ike) msg.ike = o.ike;
    await this.client.call('initiate', msg, { timeoutMs: Math.max(t, 1000) + 2000 });
  }

  async terminate(o: { child?: string; ike?: string; ikeId?: number; childId?: number; force?: boolean; timeoutMs?: number }): Promise<void> {
    const t = o.timeoutMs ?? 5000;
    const msg: ViciInput = { timeout: String(t) };
    if (o.child) msg.child = o.child;
    if (o.ike) msg.ike = o.ike;
    if (o.ikeId !== undefined) msg['ike-id'] = String(o.ikeId);
    if (o.childId !== undefined) msg['child-id'] = String(o.childId);
    if (o.force) msg.force = 'yes';
    await this.client.call('terminate', msg, { timeoutMs: t + 2000 });
  }

  async loadShared(o: { id: string; type: 'IKE' | 'EAP' | 'XAUTH' | 'NTLM' | 'PPK'; data: string | Buffer; owners: string[] }): Promise<void> {
    await this.client.call('load-shared', { id: o.id, type: o.type, data: o.data, owners: o.owners });
  }

  async unloadShared(id: string): Promise<void> {
    await this.client.call('unload-shared', { id });
  }

  async getShared(): Promise<string[]> {
    const r = await this.client.call('get-shared');
    return Array.isArray(r.keys) ? r.keys : [];
  }

  /** Loads a private key (PEM or DER); returns charon's key id. */
  async loadKey(o: { type: 'rsa' | 'ecdsa' | 'any'; data: string | Buffer }): Promise<string> {
    const r = await this.client.call('load-key', { type: o.type, data: o.data });
    return typeof r.id === 'string' ? r.id : '';
  }

  async loadCert(o: { type: 'x509' | 'x509ca' | 'x509crl' | 'x509aa' | 'x509ac' | 'x509ocsp'; data: string | Buffer; flag?: 'none' | 'ca' | 'aa' | 'ocsp' }): Promise<void> {
    // vici: type X509 with flag CA for CA certificates, X509_CRL for CRLs
    const map = { x509: ['X509', 'NONE'], x509ca: ['X509', 'CA'], x509aa: ['X509', 'AA'], x509ocsp: ['X509', 'OCSP'], x509crl: ['X509_CRL', 'NONE'], x509ac: ['X509_AC', 'NONE'] } as const;
    const [type, flag] = map[o.type];
    await this.client.call('load-cert', { type, flag: o.flag ? o.flag.toUpperCase() : flag, data: o.data });
  }

  async loadAuthority(name: string, authority: { cacert: string | Buffer; crl_uris?: string[] }): Promise<void> {
    await this.client.call('load-authority', { [name]: { cacert: authority.cacert, ...(authority.crl_uris ? { crl_uris: authority.crl_uris } : {}) } });
  }

  async flushCerts(type?: ViciCertType): Promise<void> {
    await this.client.call('flush-certs', type ? { type } : undefined);
  }
}
