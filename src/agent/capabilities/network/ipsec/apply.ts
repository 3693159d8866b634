// The IPsec applier (README "IPsec mode"): puts render.ts's connections and credentials into charon over
// VICI, one connection at a time, and only what changed — a connection whose rendered form is the same
// as the one loaded is never sent again, so an existing peer's SA is never touched when another peer
// comes or goes. What was loaded is remembered by digest in <dir>/applied.json together with the
// identity of the charon process it was loaded into, so a restarted agent that adopts the running charon
// knows what it has (and reloads nothing), while a new charon starts from nothing.
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { Logger } from '../../../../common/log.js';
import { errorMessage } from '../../../../common/errors.js';
import type { EspBackend, IpsecAuth, IpsecPart } from '../controller.js';
import type { NetworkHost } from '../inputs.js';
import { Charon, type CharonOptions } from './charon.js';
import { CONN_PREFIX, connName, isInitiator, renderIpsec, type RenderedIpsec } from './render.js';
import type { IkeSa, Vici } from './vici/client.js';

export const DEFAULT_IPSEC_DIR = '/var/lib/drover/ipsec';

export interface IpsecOptions {
  log: Logger;
  /** charon's directory (configuration, socket, log, applied.json); default /var/lib/drover/ipsec. */
  dir?: string;
  /** Run charon in this named network namespace (tests); default: the agent's own. */
  netns?: string;
  charonPath?: string;
  backend?: EspBackend;
  pollMs?: number;
}

export interface Ipsec extends IpsecPart {
  detach(): Promise<void>;
  readonly charon: Charon;
  /** Typed VICI commands on this host's charon (tests, diagnostics). */
  vici(): Vici;
  /** Names of the connections loaded, and how often each was sent to charon (tests: "never reloaded"). */
  loads(): ReadonlyMap<string, number>;
}

const Applied = z.object({
  charon: z.string(),
  conns: z.record(z.string(), z.string()),
  shared: z.record(z.string(), z.string()),
  creds: z.record(z.string(), z.string()),
});
type Applied = z.infer<typeof Applied>;

/** JSON with sorted keys: the same configuration always gives the same digest. */
function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
// digests only: applied.json never holds a secret or a key
const digest = (v: unknown) => createHash('sha256').update(stable(v)).digest('hex');

const empty = (charon: string): Applied => ({ charon, conns: {}, shared: {}, creds: {} });

/** An established IKE_SA of `name` that carries an INSTALLED CHILD_SA. */
const carries = (sa: IkeSa) => sa.state === 'ESTABLISHED' && Object.values(sa['child-sas'] ?? {}).some((c) => c.state === 'INSTALLED');

export function createIpsec(o: IpsecOptions): Ipsec {
  const log = o.log.child({ component: 'ipsec' });
  const dir = o.dir ?? DEFAULT_IPSEC_DIR;
  const statePath = join(dir, 'applied.json');
  let applied: Applied = empty('');
  let last: { self: NetworkHost; peers: NetworkHost[]; auth: IpsecAuth } | undefined;
  let lastRendered: RenderedIpsec | undefined;
  /** The charon was started by us and has had no configuration applied yet: every connection is new to it, and to its peers' stale SAs. */
  let fresh = false;
  const loadCount = new Map<string, number>();
  let chain: Promise<unknown> = Promise.resolve();

  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn, fn);
    chain = run.catch(() => undefined);
    return run;
  };

  const charonOptions: CharonOptions = {
    log: o.log,
    dir,
    ...(o.netns ? { netns: o.netns } : {}),
    ...(o.charonPath ? { charonPath: o.charonPath } : {}),
    ...(o.backend ? { backend: o.backend } : {}),
    ...(o.pollMs ? { pollMs: o.pollMs } : {}),
    onRestart: () =>
      exclusive(async () => {
        adoptState();
        if (last) await applyNow();
        log.info({ conns: Object.keys(applied.conns).length }, 'charon restarted; connections applied again');
      }),
  };
  const charon = new Charon(charonOptions);
  const vici = charon.vici;

  /** Takes applied.json when it was written for the charon now running, else starts from nothing. */
  function adoptState(): void {
    const id = charon.identity() ?? '';
    fresh = !charon.adopted;
    applied = empty(id);
    if (!charon.adopted) return;
    try {
      const r = Applied.safeParse(JSON.parse(readFileSync(statePath, 'utf8')));
      if (r.success && r.data.charon === id) applied = r.data;
    } catch {
      // none or unreadable: everything is loaded again (charon keeps SAs of unchanged connections)
    }
  }

  function persist(): void {
    const tmp = `${statePath}.tmp`;
    writeFileSync(tmp, JSON.stringify(applied, null, 1) + '\n', { mode: 0o600 });
    renameSync(tmp, statePath);
  }

  async function loadConn(name: string, r: RenderedIpsec): Promise<void> {
    const c = r.conns[name];
    if (!c) return;
    await vici.loadConn({ [name]: c });
    applied.conns[name] = digest(c);
    loadCount.set(name, (loadCount.get(name) ?? 0) + 1);
  }

  async function unloadConn(name: string): Promise<void> {
    // unload first: a peer re-initiating after our DELETE then finds no configuration that accepts it
    await vici.unloadConn(name).catch((err: unknown) => log.debug({ conn: name, err: errorMessage(err) }, 'unload-conn'));
    await vici.terminate({ ike: name, force: true, timeoutMs: 2000 }).catch(() => undefined); // "no matching SAs" when it had none
    delete applied.conns[name];
  }

  async function initiate(name: string): Promise<void> {
    // fire and forget (charon answers at once): a dead peer must not hold the vici connection
    await vici.initiate({ ike: name, child: name, timeoutMs: 0 });
  }

  async function applyNow(): Promise<void> {
    if (!last) return;
    if (!charon.running()) {
      // the watcher restarts it and applies `last` then
      log.warn('charon is not running; the connections are applied when it is back');
      return;
    }
    const { self, peers, auth } = last;
    const r = renderIpsec(self, peers, auth);
    lastRendered = r;
    const changed: string[] = [];

    // credentials first: a connection that starts at load needs them
    const creds: Record<string, string> = {};
    for (const c of r.creds) {
      const key = c.kind;
      const d = digest(c);
      creds[key] = d;
      if (applied.creds[key] === d) continue;
      if (c.kind === 'key') await vici.loadKey({ type: 'any', data: c.data });
      else if (c.kind === 'ca') await vici.loadCert({ type: 'x509ca', data: c.data });
      else await vici.loadCert({ type: 'x509crl', data: c.data });
      applied.creds[key] = d;
      changed.push(`loaded ${key}`);
    }
    for (const key of Object.keys(applied.creds)) if (!(key in creds)) delete applied.creds[key]; // charon keeps it; harmless, the conns constrain the CA
    const wantShared = new Set<string>();
    for (const s of r.shared) {
      wantShared.add(s.id);
      const d = digest(s);
      if (applied.shared[s.id] === d) continue;
      await vici.loadShared(s);
      applied.shared[s.id] = d;
    }

    // connections of peers that are gone, then new and changed ones
    for (const name of Object.keys(applied.conns)) {
      if (name in r.conns) continue;
      await unloadConn(name);
      changed.push(`removed ${name}`);
    }
    const added: string[] = [];
    for (const [name, c] of Object.entries(r.conns)) {
      const was = applied.conns[name];
      if (was === digest(c)) continue;
      await loadConn(name, r);
      if (was === undefined) added.push(name);
      changed.push(`${was === undefined ? 'added' : 'changed'} ${name}`);
    }
    for (const id of Object.keys(applied.shared)) {
      if (wantShared.has(id)) continue;
      await vici.unloadShared(id).catch(() => undefined);
      delete applied.shared[id];
    }
    persist();

    // The initiator's start_action starts its SAs. The responder initiates a connection it just got when
    // there is no SA yet: the peer may have tried before we had the configuration (and given up), or it
    // may hold a stale SA from before our charon restarted (INITIAL_CONTACT makes it drop that one).
    const byName = new Map(peers.map((p) => [connName(p.hostId), p]));
    const candidates = (fresh ? Object.keys(r.conns) : added).filter((n) => {
      const p = byName.get(n);
      return p !== undefined && !isInitiator(self, p);
    });
    fresh = false;
    if (candidates.length) {
      const sas = await vici.listSas();
      for (const n of candidates) {
        if (sas.some((s) => s.name === n)) continue;
        await initiate(n).catch((err: unknown) => log.warn({ conn: n, err: errorMessage(err) }, 'could not initiate'));
      }
    }
    if (changed.length) log.info({ changed }, 'IPsec connections applied');
  }

  async function verifyNow(stale: readonly string[]): Promise<string | undefined> {
    if (!last || !lastRendered) return undefined;
    if (!charon.running()) return 'charon is not running (being restarted)';
    const r = lastRendered;
    const { self, peers } = last;
    const repaired: string[] = [];
    const have = new Set(await vici.getConns());
    const missing = Object.keys(r.conns).filter((n) => !have.has(n));
    if (missing.length) {
      // charon lost configuration we gave it (someone cleared it): load everything again
      applied = empty(applied.charon);
      fresh = true;
      await applyNow();
      repaired.push(`loaded connections charon did not have: ${missing.join(', ')}`);
    }
    for (const n of have) {
      if (n.startsWith(CONN_PREFIX) && !(n in r.conns)) {
        await unloadConn(n);
        repaired.push(`unloaded unexpected ${n}`);
      }
    }
    const sas = await vici.listSas();
    const staleSet = new Set(stale);
    for (const p of peers) {
      const name = connName(p.hostId);
      const ikes = sas.filter((s) => s.name === name);
      const up = ikes.filter(carries);
      if (staleSet.has(p.hostId) && up.length) {
        // an SA that does not pass traffic (the peer lost it): a new one replaces it
        for (const s of ikes) await vici.terminate({ ikeId: Number(s.uniqueid), force: true, timeoutMs: 2000 }).catch(() => undefined);
        await initiate(name);
        repaired.push(`re-initiated ${name} (no traffic through its SA)`);
        continue;
      }
      if (!up.length) {
        if (ikes.some((s) => s.state === 'CONNECTING')) continue; // under way
        await initiate(name);
        repaired.push(`initiated ${name} (no installed CHILD_SA)`);
        continue;
      }
      if (up.length > 1 && isInitiator(self, p)) {
        // both sides initiated at once: the initiator keeps the newest, so both sides keep the same one
        const keep = Math.max(...up.map((s) => Number(s.uniqueid)));
        for (const s of up) if (Number(s.uniqueid) !== keep) await vici.terminate({ ikeId: Number(s.uniqueid), timeoutMs: 2000 }).catch(() => undefined);
        repaired.push(`closed ${up.length - 1} duplicate IKE_SA(s) of ${name}`);
      }
    }
    return repaired.length ? repaired.join('; ') : undefined;
  }

  return {
    charon,
    vici: () => vici,
    loads: () => loadCount,

    async start() {
      return exclusive(async () => {
        const wasRunning = charon.running();
        const s = await charon.start();
        if (!wasRunning) adoptState();
        return { backend: s.backend, reason: s.reason };
      });
    },

    overhead: () => charon.overhead(),

    async apply(self, peers, auth) {
      await exclusive(async () => {
        if (!charon.running() && charon.pid === undefined) {
          await charon.start();
          adoptState();
        }
        last = { self, peers: [...peers], auth };
        await applyNow();
      });
    },

    verify: (stale) => exclusive(() => verifyNow(stale)),

    async stop() {
      await exclusive(async () => {
        if (charon.running()) for (const name of Object.keys(applied.conns)) await unloadConn(name);
        await charon.stop();
        applied = empty('');
        last = undefined;
        lastRendered = undefined;
        rmSync(statePath, { force: true });
      });
    },

    async detach() {
      await exclusive(() => charon.detach());
    },
  };
}

