// charon, the IKE daemon of this host (README "IPsec mode"): started by the agent in the host's network
// namespace with our own strongswan.conf (nothing of /etc/strongswan.d), or adopted when an earlier agent
// left one running — the agent's restart must not stop charon, the tunnels keep carrying traffic. The
// agent watches it: if charon dies it is started again (with a backoff) and `onRestart` re-applies the
// connections.
//
// One charon per host, but tests run several in one machine: charon's pidfile (/run/charon.pid, compiled
// in) would collide, so charon gets a private mount namespace with <dir>/run bound over /run (netlab
// REPORT §6.5). That also makes <dir>/run/charon.pid charon's own pidfile, which is how a later agent
// finds the charon to adopt.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import type { Logger } from '../../../../common/log.js';
import { errorMessage } from '../../../../common/errors.js';
import type { EspBackend } from '../controller.js';
import { Vici, ViciClient } from './vici/client.js';
import { ESP_PROPOSALS } from './render.js';

export const CHARON_PATH = '/usr/lib/ipsec/charon';
export const LIBIPSEC_PLUGIN = '/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so';
/** charon.plugins.kernel-libipsec.mtu when nothing else is known (strongSwan's default). */
export const LIBIPSEC_DEFAULT_MTU = 1400;

const PLUGINS = 'random nonce openssl aes sha1 sha2 hmac gcm gmp kdf pem pkcs1 x509 pubkey revocation constraints';

// ------------------------------------------------------------------------------------------- overhead

/**
 * Worst-case bytes ESP-in-UDP in tunnel mode adds to a packet, for one ESP proposal (e.g.
 * `aes128gcm16-modp2048`, `aes128-sha1-modp2048`): outer IPv4 (20) + UDP (8) + ESP header (SPI +
 * sequence, 8) + IV + padding (worst case: block − 1; ESP aligns to 4 bytes even for the stream-like
 * GCM) + pad length and next header (2) + ICV.
 */
export function espOverheadOf(proposal: string): number {
  const algs = proposal.toLowerCase().split('-');
  const enc = algs[0] ?? '';
  let iv: number;
  let block: number;
  let icv: number;
  if (/^aes(128|192|256)gcm(8|12|16)$/.test(enc)) {
    iv = 8;
    block = 4;
    icv = Number(/gcm(\d+)$/.exec(enc)?.[1] ?? 16);
  } else if (/^aes(128|192|256)?(cbc)?$/.test(enc)) {
    iv = 16;
    block = 16;
    const integ = algs[1] ?? '';
    const icvs: Record<string, number> = { sha1: 12, sha256: 16, sha384: 24, sha512: 32 };
    const v = icvs[integ];
    if (v === undefined) throw new Error(`ESP proposal ${proposal}: unknown integrity algorithm ${JSON.stringify(integ)} (known: ${Object.keys(icvs).join(', ')})`);
    icv = v;
  } else {
    throw new Error(`ESP proposal ${proposal}: unknown encryption algorithm ${JSON.stringify(enc)}`);
  }
  return 20 + 8 + 8 + iv + (block - 1) + 2 + icv;
}

/** The worst case over the proposals charon may negotiate (81 for ours: aes128-sha1 in CBC). */
export function espOverhead(proposals: readonly string[] = ESP_PROPOSALS): number {
  return Math.max(...proposals.map(espOverheadOf));
}

/**
 * What the dataplane subtracts from the underlay MTU (besides VXLAN's 50) in IPsec mode.
 *
 * With kernel ESP it is the ESP overhead. With kernel-libipsec the VXLAN packets (tunnel address → tunnel
 * address) are routed into charon's TUN device, whose MTU bounds them as well: the VXLAN device's MTU must
 * not exceed `tunMtu − 50`. We size the TUN device ourselves (`libipsecMtu`: the largest link MTU of the
 * host minus the ESP overhead), so normally the TUN is exactly as large as the underlay allows and the
 * result is the ESP overhead; `max(ESP, underlay − tunMtu)` keeps it right if the underlay is larger
 * than what the TUN was made for (a link MTU raised after charon started).
 */
export function ipsecOverhead(backend: EspBackend, underlayMtu: number, tunMtu: number | undefined, proposals: readonly string[] = ESP_PROPOSALS): number {
  const esp = espOverhead(proposals);
  if (backend === 'kernel' || tunMtu === undefined) return esp;
  return Math.max(esp, underlayMtu - tunMtu);
}

/** The TUN MTU for kernel-libipsec: as large as the largest link allows after ESP (never below 1280). */
export function libipsecMtu(maxLinkMtu: number, proposals: readonly string[] = ESP_PROPOSALS): number {
  return Math.max(1280, maxLinkMtu - espOverhead(proposals));
}

// -------------------------------------------------------------------------------------------- config

export function renderStrongswanConf(o: { dir: string; backend: EspBackend; tunMtu: number }): string {
  // kernel-libipsec must come before kernel-netlink to be the IPsec backend (netlab §6.2); kernel-netlink
  // is never critical: its kernel-ipsec feature is expected to lose to libipsec (§6.3). kdf: §6.4.
  const load = `${PLUGINS} ${o.backend === 'libipsec' ? 'kernel-libipsec! ' : ''}kernel-netlink socket-default! vici!`;
  return `# written by the drover agent; charon reads it at start (STRONGSWAN_CONF)
charon {
  load = ${load}
  install_routes = yes
  install_virtual_ip = no
  # fail fast on a dead peer (defaults 4 s / 1.8 / 5 tries: ~165 s, netlab §6.8)
  retransmit_timeout = 1
  retransmit_base = 1.4
  retransmit_tries = 3
  plugins {
    vici {
      socket = unix://${o.dir}/run/charon.vici
    }
    kernel-libipsec {
      mtu = ${o.tunMtu}
    }
  }
  filelog {
    drover {
      path = ${o.dir}/charon.log
      time_format = %F %T
      default = 1
      # packets and their encoding: one line per DPD, too much for a log that runs for months
      net = 0
      enc = 0
      flush_line = yes
    }
  }
}
`;
}

/** The backend and TUN MTU a strongswan.conf of ours was written with (for an adopted charon). */
export function parseStrongswanConf(text: string): { backend: EspBackend; tunMtu: number | undefined } {
  const load = /^\s*load\s*=\s*(.*)$/m.exec(text)?.[1] ?? '';
  const mtu = /kernel-libipsec\s*\{\s*mtu\s*=\s*(\d+)/.exec(text)?.[1];
  return { backend: /\bkernel-libipsec!?(\s|$)/.test(load) ? 'libipsec' : 'kernel', tunMtu: mtu ? Number(mtu) : undefined };
}

// ---------------------------------------------------------------------------------------- processes

interface ProcInfo {
  state: string;
  startTime: string;
  comm: string;
}

/** /proc/<pid>/stat: state and start time (PIDs are reused; a zombie counts as dead, netlab §6.11). */
export function procInfo(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const rest = stat.slice(close + 2).split(' ');
    return { state: rest[0] ?? '?', startTime: rest[19] ?? '', comm };
  } catch {
    return undefined;
  }
}

function alive(pid: number, startTime?: string): boolean {
  const p = procInfo(pid);
  if (!p || p.state === 'Z' || p.state === 'X') return false;
  return startTime === undefined || p.startTime === startTime;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------- charon

export interface CharonOptions {
  log: Logger;
  /** Configuration, socket (<dir>/run/charon.vici), pidfile and log. Must not be under /run. */
  dir: string;
  /** Run charon (and the probes) in this named network namespace (tests); default: the agent's own. */
  netns?: string;
  charonPath?: string;
  /** Called after charon was started again because it had died (re-apply the connections). */
  onRestart?: () => Promise<void>;
  /** How often an adopted charon's PID is checked (a child's exit is seen at once); default 1 s. */
  pollMs?: number;
  /** Forces the backend (tests); default: detected by trying a kernel ESP state. */
  backend?: EspBackend;
}

export interface CharonStatus {
  backend: EspBackend;
  reason: string;
  pid: number;
  adopted: boolean;
}

/** charon of this host: start or adopt, watch and restart, stop or let go. */
export class Charon {
  readonly dir: string;
  readonly socketPath: string;
  readonly confPath: string;
  readonly vici: Vici;
  private readonly client: ViciClient;
  private readonly log: Logger;
  private status: CharonStatus | undefined;
  private startTime: string | undefined;
  private tunMtu: number | undefined;
  private maxLinkMtu = 1500;
  private child: Promise<unknown> | undefined;
  private poll: NodeJS.Timeout | undefined;
  private watching = false;
  private restarting: Promise<void> | undefined;
  private failures = 0;
  private stopped = false;
  private lastStart = 0;
  /** Increases on every (re)start or adoption: lets callers tell "the same charon" from a new one. */
  generation = 0;

  constructor(private readonly o: CharonOptions) {
    this.dir = resolve(o.dir);
    if (this.dir === '/run' || this.dir.startsWith('/run/') || this.dir === '/var/run' || this.dir.startsWith('/var/run/')) {
      // /run is replaced by <dir>/run in charon's mount namespace: a dir below /run would not be where
      // charon looks for it
      throw new Error(`charon's directory ${this.dir} must not be under /run (charon gets <dir>/run as its /run); use e.g. /var/lib/drover/ipsec`);
    }
    this.socketPath = join(this.dir, 'run', 'charon.vici');
    this.confPath = join(this.dir, 'strongswan.conf');
    this.log = o.log.child({ component: 'charon' });
    this.client = new ViciClient({ socketPath: this.socketPath, timeoutMs: 10_000 });
    this.client.on('disconnect', () => {
      if (this.watching) setImmediate(() => this.check());
    });
    this.vici = new Vici(this.client);
  }

  /** Tells this charon process from any other (a PID can be reused): pid and start time. */
  identity(): string | undefined {
    return this.status && this.startTime ? `${this.status.pid}:${this.startTime}` : undefined;
  }

  /** Whether the running charon was adopted from an earlier agent (not started by us). */
  get adopted(): boolean {
    return this.status?.adopted ?? false;
  }

  get pid(): number | undefined {
    return this.status?.pid;
  }

  /** What the dataplane subtracts from the underlay MTU besides VXLAN (see ipsecOverhead). */
  overhead(): number {
    if (!this.status) return espOverhead();
    return ipsecOverhead(this.status.backend, this.maxLinkMtu, this.tunMtu);
  }

  /** Adopts the charon an earlier agent left, or starts one; then watches it. */
  async start(): Promise<CharonStatus> {
    this.stopped = false;
    if (this.status && alive(this.status.pid, this.startTime)) return this.status;
    this.client.reopen();
    const s = await this.adoptOrLaunch();
    this.watch();
    return s;
  }

  private async adoptOrLaunch(): Promise<CharonStatus> {
    mkdirSync(join(this.dir, 'run'), { recursive: true, mode: 0o700 });
    this.maxLinkMtu = await this.largestLinkMtu();
    const adopted = await this.tryAdopt();
    if (adopted) return adopted;
    return this.launch();
  }

  private pidFile(): number | undefined {
    try {
      const n = Number(readFileSync(join(this.dir, 'run', 'charon.pid'), 'utf8').trim());
      return Number.isInteger(n) && n > 1 ? n : undefined;
    } catch {
      return undefined;
    }
  }

  /** A charon of ours is running when its pidfile names a live charon and its vici socket answers. */
  private async tryAdopt(): Promise<CharonStatus | undefined> {
    const pid = this.pidFile();
    if (pid === undefined) return undefined;
    const p = procInfo(pid);
    if (!p || p.state === 'Z' || p.comm !== 'charon') return undefined;
    let lastErr = '';
    for (let i = 0; i < 6; i++) {
      try {
        const v = await this.vici.version();
        let conf = { backend: 'libipsec' as EspBackend, tunMtu: undefined as number | undefined };
        try {
          conf = parseStrongswanConf(readFileSync(this.confPath, 'utf8'));
        } catch {
          // our strongswan.conf is gone: assume the fallback backend (only the MTU depends on it)
        }
        this.tunMtu = conf.tunMtu;
        this.startTime = p.startTime;
        this.child = undefined;
        this.generation++;
        this.status = { backend: conf.backend, reason: `adopted the running charon ${v.version} (pid ${pid}) from an earlier agent`, pid, adopted: true };
        this.log.info({ pid, version: v.version, backend: conf.backend }, 'adopted running charon');
        return this.status;
      } catch (err) {
        lastErr = errorMessage(err);
        await sleep(500);
      }
    }
    // alive but deaf (hung, or not ours after all: it is in our dir, so it is ours): replace it
    this.log.warn({ pid, err: lastErr }, 'charon from the pidfile does not answer on its vici socket; stopping it');
    await this.kill(pid, p.startTime);
    return undefined;
  }

  private async exec(file: string, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const [f, a]: [string, string[]] = this.o.netns ? ['ip', ['netns', 'exec', this.o.netns, file, ...args]] : [file, args];
    const r = await execa(f, a, { reject: false, timeout: 15_000 });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** The largest MTU of the host's links other than loopback and the ones the overlay itself makes. */
  private async largestLinkMtu(): Promise<number> {
    const r = await this.exec('ip', ['-j', 'link', 'show']);
    if (r.exitCode !== 0) return 1500;
    try {
      const links = JSON.parse(r.stdout) as { ifname?: string; mtu?: number; link_type?: string }[];
      let max = 0;
      for (const l of links) {
        if (l.link_type === 'loopback' || l.link_type === 'none' || l.ifname === 'ipsec0' || l.ifname === 'drover.vx') continue;
        if (typeof l.mtu === 'number' && l.mtu > max) max = l.mtu;
      }
      return max || 1500;
    } catch {
      return 1500;
    }
  }

  /**
   * Kernel ESP or kernel-libipsec: by really trying to add an ESP-in-UDP state with our AEAD in a
   * throwaway network namespace (a kernel without CONFIG_INET_ESP lists `ip xfrm state` fine but refuses
   * any ESP state; netlab §6.1).
   */
  async detectBackend(): Promise<{ backend: EspBackend; reason: string }> {
    if (this.o.backend) return { backend: this.o.backend, reason: `backend ${this.o.backend} forced by the caller` };
    const key = '0x' + '11'.repeat(20);
    const gcm = await this.exec('unshare', ['--net', 'ip', 'xfrm', 'state', 'add', 'src', '192.0.2.1', 'dst', '192.0.2.2', 'proto', 'esp', 'spi', '0x100', 'mode', 'tunnel', 'aead', 'rfc4106(gcm(aes))', key, '128', 'encap', 'espinudp', '4500', '4500', '0.0.0.0']);
    let why: string;
    if (gcm.exitCode === 0) {
      const cbc = await this.exec('unshare', ['--net', 'ip', 'xfrm', 'state', 'add', 'src', '192.0.2.1', 'dst', '192.0.2.2', 'proto', 'esp', 'spi', '0x101', 'mode', 'tunnel', 'enc', 'cbc(aes)', '0x' + '22'.repeat(16), 'auth-trunc', 'hmac(sha1)', '0x' + '33'.repeat(20), '96', 'encap', 'espinudp', '4500', '4500', '0.0.0.0']);
      if (cbc.exitCode === 0) return { backend: 'kernel', reason: 'the kernel accepted ESP-in-UDP states (AES-GCM and AES-CBC/SHA1): kernel ESP (XFRM)' };
      why = `the kernel refused an AES-CBC/HMAC-SHA1 ESP state: ${cbc.stderr.trim() || `exit ${cbc.exitCode}`}`;
    } else {
      why = `the kernel refused an AES-GCM ESP-in-UDP state: ${gcm.stderr.trim() || `exit ${gcm.exitCode}`}`;
    }
    if (!existsSync(LIBIPSEC_PLUGIN)) {
      throw new Error(`kernel ESP is not usable (${why}) and charon's kernel-libipsec plugin is missing (${LIBIPSEC_PLUGIN}): install libcharon-extra-plugins, or use a kernel with CONFIG_INET_ESP`);
    }
    return { backend: 'libipsec', reason: `${why}; using userspace ESP (kernel-libipsec)` };
  }

  private async launch(): Promise<CharonStatus> {
    const { backend, reason } = await this.detectBackend();
    this.tunMtu = backend === 'libipsec' ? libipsecMtu(this.maxLinkMtu) : undefined;
    writeFileSync(this.confPath, renderStrongswanConf({ dir: this.dir, backend, tunMtu: this.tunMtu ?? LIBIPSEC_DEFAULT_MTU }), { mode: 0o600 });
    // a killed charon leaves its socket behind: a "socket exists" wait would pass at once (netlab §6.6)
    for (const f of ['charon.pid', 'charon.vici']) rmSync(join(this.dir, 'run', f), { force: true });
    this.rotateLog();
    const charon = this.o.charonPath ?? CHARON_PATH;
    // the output goes to a file by the shell, not through a pipe to us: charon outlives the agent
    const script = 'mount --bind "$1/run" /run && exec "$2" >>"$1/charon.out" 2>&1';
    // `ip netns exec` and `unshare` make the private mount namespace and exec (no fork), and so do sh's
    // exec: the PID we get is charon's
    const [file, args]: [string, string[]] = this.o.netns
      ? ['ip', ['netns', 'exec', this.o.netns, 'sh', '-c', script, 'sh', this.dir, charon]]
      : ['unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', this.dir, charon]];
    const child = execa(file, args, {
      detached: true, // its own process group: a signal to the agent's group does not reach charon
      cleanup: false, // outlives the agent
      reject: false,
      stdio: 'ignore',
      env: { STRONGSWAN_CONF: this.confPath },
    });
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start charon (${file} ${args.join(' ')}): no PID`);
    let exited: string | undefined;
    void child.then((r) => {
      exited = `exit ${r.exitCode ?? r.signal ?? '?'}`;
      if (this.child === child) {
        this.child = undefined;
        if (this.watching) setImmediate(() => this.check());
      }
    });
    this.child = child;
    this.lastStart = Date.now();
    const deadline = Date.now() + 15_000;
    let lastErr = '';
    for (;;) {
      if (exited !== undefined) throw new Error(`charon exited at start (${exited}): ${this.logTail()}`);
      if (existsSync(this.socketPath)) {
        try {
          const v = await this.vici.version();
          this.startTime = procInfo(pid)?.startTime;
          this.generation++;
          this.status = { backend, reason, pid, adopted: false };
          this.log.info({ pid, version: v.version, backend }, 'charon started');
          return this.status;
        } catch (err) {
          lastErr = errorMessage(err);
        }
      }
      if (Date.now() > deadline) {
        await this.kill(pid);
        throw new Error(`charon (pid ${pid}) did not answer on ${this.socketPath} within 15 s (${lastErr || 'no socket'}): ${this.logTail()}`);
      }
      await sleep(50);
    }
  }

  private rotateLog(): void {
    const log = join(this.dir, 'charon.log');
    try {
      if (statSync(log).size > 10 * 1024 * 1024) renameSync(log, `${log}.1`);
    } catch {
      // no log yet
    }
  }

  /** The last lines of charon's log and output, for an error a user can act on. */
  logTail(): string {
    const lines: string[] = [];
    for (const f of ['charon.log', 'charon.out']) {
      try {
        const t = readFileSync(join(this.dir, f), 'utf8').trimEnd().split('\n').slice(-4);
        lines.push(...t);
      } catch {
        // not written
      }
    }
    return lines.length ? lines.join(' | ') : `no log in ${this.dir}`;
  }

  private async kill(pid: number, startTime?: string): Promise<void> {
    if (!alive(pid, startTime)) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    for (let i = 0; i < 50 && alive(pid, startTime); i++) await sleep(100);
    if (alive(pid, startTime)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      for (let i = 0; i < 30 && alive(pid, startTime); i++) await sleep(100);
    }
  }

  // ------------------------------------------------------------------------------------------ watching

  private watch(): void {
    this.watching = true;
    if (this.poll) return;
    this.poll = setInterval(() => this.check(), this.o.pollMs ?? 1000);
    this.poll.unref();
  }

  /** Whether the charon we started or adopted is still there. */
  running(): boolean {
    return this.status !== undefined && alive(this.status.pid, this.startTime);
  }

  private check(): void {
    if (!this.watching || this.restarting || !this.status || this.running()) return;
    const pid = this.status.pid;
    this.restarting = this.restart(pid).finally(() => {
      this.restarting = undefined;
    });
  }

  /** Resolves once a restart in progress (if any) is over. */
  async settled(): Promise<void> {
    while (this.restarting) await this.restarting;
  }

  private async restart(deadPid: number): Promise<void> {
    // a charon that lived a minute is a new failure sequence: the first restart is immediate
    if (Date.now() - this.lastStart > 60_000) this.failures = 0;
    for (;;) {
      if (!this.watching) return;
      const delay = this.failures === 0 ? 0 : Math.min(30_000, 500 * 2 ** (this.failures - 1));
      this.log.warn({ pid: deadPid, delayMs: delay, tail: this.logTail() }, 'charon is gone; starting it again');
      if (delay) await sleep(delay);
      if (!this.watching) return;
      this.failures++;
      try {
        this.client.close();
        this.client.reopen();
        const s = await this.adoptOrLaunch();
        if (this.stopped) {
          // stop() came while it was starting
          await this.kill(s.pid, this.startTime);
          return;
        }
        if (this.o.onRestart) await this.o.onRestart();
        return;
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'could not restart charon');
      }
    }
  }

  // ------------------------------------------------------------------------------------------- ending

  /** Stops watching and lets go of the vici connection; charon keeps running (agent shutdown). */
  detach(): Promise<void> {
    this.watching = false;
    if (this.poll) clearInterval(this.poll);
    this.poll = undefined;
    // not waiting for a restart under way: its onRestart may be queued behind the caller
    this.client.close();
    return Promise.resolve();
  }

  /** Stops charon (SIGTERM: it deletes its SAs with the peers) and forgets it. */
  async stop(): Promise<void> {
    this.stopped = true;
    const s = this.status;
    await this.detach();
    if (s) await this.kill(s.pid, this.startTime);
    this.status = undefined;
    for (const f of ['charon.pid', 'charon.vici']) rmSync(join(this.dir, 'run', f), { force: true });
  }
}
