// The overlay's applier (README.md, "Data path"): renders the desired kernel state (render.ts), reads
// what the kernel has (`ip -j`, `bridge -j`), and runs only the difference — one `ip -batch -` and one
// `bridge -batch -` process, each fed on stdin — plus the few sysctls the path needs. Idempotent: a
// second apply with the same inputs runs nothing that writes; a container coming is one route.
//
// The commands go through a DataplaneSystem so the same code runs inside a network namespace (the
// integration test, a lab) as on the host.
import { readFile, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import type { Logger } from '../../../../common/log.js';
import { errorMessage } from '../../../../common/errors.js';
import type { DataplanePart } from '../controller.js';
import type { NetworkHost, NetworkInputs } from '../inputs.js';
import { interfaceOf, parseAddrs, parseFdb, parseLink, parseNeighbours, parseRoutes } from './kernel.js';
import {
  computeMtu,
  describeChanges,
  diffDataplane,
  renderDataplane,
  TUNNEL_LABEL,
  VXLAN_DEVICE,
  type DataplaneState,
  type KernelState,
} from './render.js';

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Where the applier's commands run: the host, or a network namespace. */
export interface DataplaneSystem {
  /** Runs a program; `input` is its stdin. Resolves (does not throw) on a nonzero exit. */
  run(file: string, args: string[], input?: string): Promise<ExecResult>;
  /** A sysctl by its path under /proc/sys (`net/ipv4/conf/drover.vx/rp_filter`); undefined when absent. */
  readSysctl(path: string): Promise<string | undefined>;
  writeSysctl(path: string, value: string): Promise<void>;
}

const TIMEOUT_MS = 30_000;

async function execRun(file: string, args: string[], input?: string): Promise<ExecResult> {
  const r = await execa(file, args, { reject: false, timeout: TIMEOUT_MS, ...(input !== undefined ? { input } : { stdin: 'ignore' }) });
  if (r.failed && r.exitCode === undefined) {
    // Not started, or killed by the timeout: no exit code to report.
    return { exitCode: -1, stdout: String(r.stdout ?? ''), stderr: `${r.shortMessage}${r.stderr ? `: ${String(r.stderr)}` : ''}` };
  }
  return { exitCode: r.exitCode ?? 0, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

/** This host's kernel (sysctls written to /proc/sys directly: an interface name with a dot needs no escaping). */
export function localSystem(): DataplaneSystem {
  return {
    run: execRun,
    async readSysctl(path) {
      try {
        return (await readFile(`/proc/sys/${path}`, 'utf8')).trim();
      } catch {
        return undefined;
      }
    },
    async writeSysctl(path, value) {
      await writeFile(`/proc/sys/${path}`, value);
    },
  };
}

/**
 * The kernel of network namespace `ns` (`ip netns exec`). /proc/sys/net is the opening process's
 * namespace's, so sysctls go through `sysctl` there, in its slash form (keeps the dot of `drover.vx`).
 */
export function netnsSystem(ns: string): DataplaneSystem {
  const run = (file: string, args: string[], input?: string) => execRun('ip', ['netns', 'exec', ns, file, ...args], input);
  return {
    run,
    async readSysctl(path) {
      const r = await run('sysctl', ['-n', path]);
      return r.exitCode === 0 ? r.stdout.trim() : undefined;
    },
    async writeSysctl(path, value) {
      const r = await run('sysctl', ['-qw', `${path}=${value}`]);
      if (r.exitCode !== 0) throw new Error(`sysctl -w ${path}=${value} in netns ${ns}: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    },
  };
}

export interface DataplaneOptions {
  log: Logger;
  /** The underlay: interface and MTU of the agent address (default: found with `ip -j -4 addr show`). */
  underlayDev?: (agentIp: string) => Promise<{ dev: string; mtu: number }>;
  /** Where the commands run (default: this host). */
  system?: DataplaneSystem;
}

export type Dataplane = DataplanePart & { mtu(): number | undefined };

/** The Docker network's bridge (runtime/network.ts creates it and sets the same sysctls). */
const BRIDGE = 'drover0';

/**
 * The sysctls the path needs. Forwarding between drover0 and drover.vx; proxy ARP on drover0 because
 * containers have the /16 and ARP for remote addresses (the /32 routes on drover.vx make the host answer
 * for them), without the default 0.8 s delay; rp_filter loose on drover.vx: a packet from a remote
 * container whose /32 is not yet here would be dropped by strict mode, and the effective value is
 * max(all, dev), so 2 holds even when `all` is 1.
 */
function wantedSysctls(bridgeExists: boolean): [string, string][] {
  return [
    ['net/ipv4/ip_forward', '1'],
    [`net/ipv4/conf/${VXLAN_DEVICE}/rp_filter`, '2'],
    ...(bridgeExists
      ? ([
          [`net/ipv4/conf/${BRIDGE}/proxy_arp`, '1'],
          [`net/ipv4/neigh/${BRIDGE}/proxy_delay`, '0'],
        ] as [string, string][])
      : []),
  ];
}

/** The failed lines of a batch with their messages; `rest`: messages after the last failure. */
function batchFailures(lines: string[], stderr: string): { failures: { line: string; why: string }[]; rest: string[] } {
  const failures: { line: string; why: string }[] = [];
  let why: string[] = [];
  for (const raw of stderr.split('\n')) {
    const l = raw.trim();
    const m = /^Command failed -:(\d+)$/.exec(l);
    if (m) {
      failures.push({ line: lines[Number(m[1]) - 1] ?? `line ${m[1]}`, why: why.join(' ') || 'no message' });
      why = [];
    } else if (l) why.push(l.replace(/^Error: /, ''));
  }
  return { failures, rest: why };
}

/**
 * Which lines of a batch failed and why, for an error a user can act on. iproute2 prints each failure's
 * message, then `Command failed -:N`. When the device itself could not be made, the lines that needed it
 * fail too ("Cannot find device"): those are counted, not listed.
 */
export function batchError(prog: string, lines: string[], r: ExecResult): string {
  const { failures, rest } = batchFailures(lines, r.stderr);
  const noDevice = (f: { why: string }) => f.why.includes(`Cannot find device "${VXLAN_DEVICE}"`);
  const linkFailed = failures.some((f) => f.line.startsWith(`link add ${VXLAN_DEVICE} `));
  const shown = linkFailed ? failures.filter((f) => !noDevice(f)) : failures;
  const parts = shown.map((f) => `"${f.line}": ${f.why}${/specified VNI already exists/.test(f.why) ? ` (another VXLAN device of this host has the same VNI and port, see \`ip -d link show type vxlan\`: remove it or give the environment another VNI, network.vxlanVni)` : ''}`);
  if (shown.length < failures.length) parts.push(`${failures.length - shown.length} more that need ${VXLAN_DEVICE}`);
  if (!failures.length && rest.length) parts.push(rest.join(' '));
  return `\`${prog} -force -batch -\` exited ${r.exitCode}${parts.length ? `: ${parts.join('; ')}` : ''}`;
}

export function createDataplane(o: DataplaneOptions): Dataplane {
  const log = o.log.child({ component: 'network-dataplane' });
  const sys = o.system ?? localSystem();
  /** The last desired state rendered from good inputs: what verify repairs towards. */
  let target: DataplaneState | undefined;
  let lastMtu: number | undefined;
  let chain: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const r = chain.then(fn, fn);
    chain = r.catch(() => undefined);
    return r;
  };

  async function read(file: string, args: string[]): Promise<string> {
    const r = await sys.run(file, args);
    if (r.exitCode !== 0) throw new Error(`\`${file} ${args.join(' ')}\` failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
    return r.stdout;
  }

  async function underlay(agentIp: string): Promise<{ dev: string; mtu: number }> {
    if (o.underlayDev) return o.underlayDev(agentIp);
    const u = interfaceOf(await read('ip', ['-j', '-4', 'addr', 'show']), agentIp);
    if (!u) throw new Error(`no interface of this host holds the agent address ${agentIp} (the overlay's underlay): check the agent's --ip / agentIpAddress`);
    return u;
  }

  async function readKernel(): Promise<KernelState> {
    const l = await sys.run('ip', ['-j', '-d', 'link', 'show', 'dev', VXLAN_DEVICE]);
    let link;
    if (l.exitCode === 0) link = parseLink(l.stdout);
    else if (!/does not exist|Cannot find device/i.test(l.stderr)) throw new Error(`\`ip -j -d link show dev ${VXLAN_DEVICE}\` failed: ${l.stderr.trim() || `exit ${l.exitCode}`}`);
    const lo = parseAddrs(await read('ip', ['-j', '-4', 'addr', 'show', 'dev', 'lo']));
    if (!link) return { link: undefined, lo, vxAddrs: [], neighbours: [], fdb: [], routes: [] };
    const [a, n, f, r] = await Promise.all([
      read('ip', ['-j', '-4', 'addr', 'show', 'dev', VXLAN_DEVICE]),
      read('ip', ['-j', '-4', 'neigh', 'show', 'dev', VXLAN_DEVICE]),
      read('bridge', ['-j', 'fdb', 'show', 'dev', VXLAN_DEVICE]),
      read('ip', ['-j', '-4', 'route', 'show', 'dev', VXLAN_DEVICE]),
    ]);
    return { link, lo, vxAddrs: parseAddrs(a), neighbours: parseNeighbours(n), fdb: parseFdb(f), routes: parseRoutes(r) };
  }

  /** Makes the kernel match `want`; resolves with what it changed. Throws after trying everything. */
  async function sync(want: DataplaneState): Promise<string[]> {
    const diff = diffDataplane(want, await readKernel());
    const errors: string[] = [];
    let noLink = false;
    if (diff.ip.length) {
      // -force: one refused line (say, a route) does not keep the others out; the error names it.
      const r = await sys.run('ip', ['-force', '-batch', '-'], `${diff.ip.join('\n')}\n`);
      if (r.exitCode !== 0) {
        errors.push(batchError('ip', diff.ip, r));
        noLink = batchFailures(diff.ip, r.stderr).failures.some((f) => f.line.startsWith(`link add ${VXLAN_DEVICE} `));
      }
    }
    // Without the device its FDB cannot be written: the error above says why.
    if (diff.bridge.length && !noLink) {
      const r = await sys.run('bridge', ['-force', '-batch', '-'], `${diff.bridge.join('\n')}\n`);
      if (r.exitCode !== 0) errors.push(batchError('bridge', diff.bridge, r));
    }
    const changes = [...diff.changes];
    const bridgeExists = (await sys.readSysctl(`net/ipv4/conf/${BRIDGE}/proxy_arp`)) !== undefined;
    for (const [path, value] of wantedSysctls(bridgeExists)) {
      const had = await sys.readSysctl(path);
      if (had === value) continue;
      if (had === undefined && path.includes(VXLAN_DEVICE) && noLink) continue; // the device is not there: said above
      try {
        await sys.writeSysctl(path, value);
        changes.push(`set ${path.replaceAll('/', '.')}=${value} (was ${had ?? 'absent'})`);
      } catch (err) {
        errors.push(`could not set /proc/sys/${path} to ${value}: ${errorMessage(err)}`);
      }
    }
    if (errors.length) {
      throw new Error(`the overlay (${VXLAN_DEVICE}) is not fully in place: ${errors.join('; ')}${changes.length ? ` (attempted: ${describeChanges(changes)})` : ''}`);
    }
    return changes;
  }

  return {
    apply(inputs: NetworkInputs & { self: NetworkHost }, overhead: number) {
      return exclusive(async () => {
        const needUnderlay = inputs.mode === 'vxlan' || inputs.mtuOverride === undefined;
        let u: { dev: string; mtu: number } | undefined;
        try {
          u = await underlay(inputs.self.agentIp);
        } catch (err) {
          if (needUnderlay) throw err;
        }
        const mtu = computeMtu({ underlayMtu: u?.mtu ?? 0, mode: inputs.mode, ipsecOverhead: overhead, override: inputs.mtuOverride });
        const want = renderDataplane({
          mode: inputs.mode,
          vni: inputs.vni,
          self: inputs.self,
          peers: inputs.peers,
          remoteContainers: inputs.remoteContainers,
          underlayDev: u?.dev ?? '',
          mtu,
        });
        target = want;
        lastMtu = mtu;
        const changes = await sync(want);
        if (changes.length) {
          log.info({ changes: changes.length, mtu, peers: want.neighbours.length, routes: want.routes.length }, `overlay updated: ${describeChanges(changes)}`);
        }
      });
    },

    verify() {
      return exclusive(async () => {
        if (!target) return undefined;
        const changes = await sync(target);
        const d = describeChanges(changes);
        if (d) log.warn({ changes: changes.length }, `overlay drift repaired: ${d}`);
        return d;
      });
    },

    remove() {
      return exclusive(async () => {
        const have = await readKernel();
        const lines: string[] = [];
        if (have.link) lines.push(`link del ${VXLAN_DEVICE}`);
        for (const a of have.lo) if (a.label === TUNNEL_LABEL) lines.push(`addr del ${a.ip}/${a.prefixlen} dev lo`);
        target = undefined;
        lastMtu = undefined;
        if (!lines.length) return;
        const r = await sys.run('ip', ['-force', '-batch', '-'], `${lines.join('\n')}\n`);
        if (r.exitCode !== 0) throw new Error(`could not remove the overlay: ${batchError('ip', lines, r)}`);
        log.info(`overlay removed (${lines.join('; ')})`);
      });
    },

    mtu: () => lastMtu,
  };
}
