// The host firewall's applier: puts the rendered CATTLE_* chains in place with `iptables-restore
// --noflush` (our chains flushed and refilled, nothing else touched), keeps the jumps into them first in
// the built-in chains, and compares what the kernel has (`iptables-save`) with what it applied, so drift
// (a rule deleted by hand, Docker putting its own jump on top of FORWARD) is repaired on verify.
//
// A render is tried with `iptables-restore --test` first: iptables-restore commits table by table, so a
// text it refuses half-way would otherwise leave some tables new and some old. The last text that went in
// is kept; a refused one changes nothing, and a failure after the test passed puts the last good back.
import { execa } from 'execa';
import type { Logger } from '../../../../common/log.js';
import { RANCHER_SERVICES_IP } from '../../../../model/labels.js';
import { BRIDGE_NAME } from '../../../runtime/network.js';
import type { FirewallPart } from '../controller.js';
import type { NetworkInputs } from '../inputs.js';
import {
  FIREWALL_CHAINS,
  FIREWALL_JUMPS,
  TABLES,
  chainRules,
  jumpRule,
  parseRules,
  renderFirewall,
  type FirewallInput,
  type FirewallJump,
  type ParsedRules,
} from './render.js';

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a program (tests run it inside a network namespace); never rejects on a non-zero exit. */
export type FirewallExec = (file: string, args: readonly string[], input?: string) => Promise<ExecResult>;

export interface FirewallOptions {
  log: Logger;
  exec?: FirewallExec;
  bridge?: string;
  overlayDev?: string;
  metadataIp?: string;
  /** Replaces renderFirewall (tests: a text iptables refuses). */
  render?: (i: FirewallInput) => string;
}

export interface Firewall extends FirewallPart {
  /** The text last put in place (the last good render), undefined before the first apply or after remove. */
  lastRendered(): string | undefined;
}

/** The overlay device of dataplane/ (VXLAN, in both overlay modes). */
export const OVERLAY_DEV = 'drover.vx';

/** Sysctls the rules depend on: forwarding, and bridge netfilter (anti-spoofing sees bridged packets). */
export const FIREWALL_SYSCTLS: readonly [string, string][] = [
  ['net.ipv4.ip_forward', '1'],
  ['net.bridge.bridge-nf-call-iptables', '1'],
];

const defaultExec: FirewallExec = async (file, args, input) => {
  const r = await execa(file, [...args], { reject: false, timeout: 30_000, ...(input !== undefined ? { input } : {}) });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
};

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, k) => x === b[k]);

/** What differs between our chains as expected and as the kernel has them (one phrase per chain). */
export function chainDrift(expected: ParsedRules, actual: ParsedRules): string[] {
  const out: string[] = [];
  for (const table of TABLES) {
    for (const chain of FIREWALL_CHAINS[table]) {
      const want = chainRules(expected, table, chain);
      if (!actual.chains.get(table)?.has(chain)) {
        out.push(`${table} ${chain} was missing`);
        continue;
      }
      const have = chainRules(actual, table, chain);
      if (sameList(want, have)) continue;
      const missing = want.filter((r) => !have.includes(r)).length;
      const extra = have.filter((r) => !want.includes(r)).length;
      out.push(
        missing || extra
          ? `${table} ${chain} had ${missing} rule(s) missing and ${extra} unexpected`
          : `${table} ${chain} had its rules out of order`,
      );
    }
  }
  return out;
}

interface JumpState {
  jump: FirewallJump;
  /** How many times the jump is in its built-in chain. */
  count: number;
  /** Its position (1-based) when present. */
  first: number | undefined;
}

function jumpStates(actual: ParsedRules): JumpState[] {
  return FIREWALL_JUMPS.map((jump) => {
    const rules = chainRules(actual, jump.table, jump.chain);
    const r = jumpRule(jump);
    const idx = rules.indexOf(r);
    return { jump, count: rules.filter((x) => x === r).length, first: idx < 0 ? undefined : idx + 1 };
  });
}

const jumpOk = (s: JumpState) => s.count === 1 && s.first === 1;

function describeJump(s: JumpState): string {
  const where = `${s.jump.table} ${s.jump.chain} → ${s.jump.target}`;
  if (s.count === 0) return `jump ${where} was missing`;
  if (s.count > 1) return `jump ${where} was there ${s.count} times`;
  return `jump ${where} was at position ${s.first ?? '?'} (moved back to first)`;
}

/**
 * Restore input that makes each given jump the only one and the first: the old ones deleted by rule
 * (not by number, so a rule inserted meanwhile by someone else is never deleted instead) and a new one
 * inserted at the top, in one table commit, so the jump is never absent.
 */
function jumpFixText(states: JumpState[]): string {
  const out: string[] = [];
  for (const table of TABLES) {
    const mine = states.filter((s) => s.jump.table === table);
    if (!mine.length) continue;
    out.push(`*${table}`);
    for (const s of mine) {
      for (let k = 0; k < s.count; k++) out.push(`-D ${s.jump.chain} ${jumpRule(s.jump)}`);
      out.push(`-I ${s.jump.chain} 1 ${jumpRule(s.jump)}`);
    }
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}

/** iptables-restore --test refused the text: nothing was changed. */
class RefusedError extends Error {}

function firstLines(s: string, n = 6): string {
  return s.trim().split('\n').slice(0, n).join(' | ');
}

export function createFirewall(o: FirewallOptions): Firewall {
  const log = o.log.child({ component: 'iptables' });
  const exec = o.exec ?? defaultExec;
  const render = o.render ?? renderFirewall;
  const bridge = o.bridge ?? BRIDGE_NAME;
  const overlayDev = o.overlayDev ?? OVERLAY_DEV;
  const metadataIp = o.metadataIp ?? RANCHER_SERVICES_IP;
  /** The last text that went in, and the rules iptables-save shows for it. */
  let good: { text: string; expected: ParsedRules } | undefined;
  let warnedCanonical = false;
  /** Veths whose bridge port has hairpin mode on (set once per veth). */
  let hairpinned = new Set<string>();

  async function run(file: string, args: string[], input?: string): Promise<string> {
    const r = await exec(file, args, input);
    if (r.exitCode !== 0) {
      throw new Error(`${file} ${args.join(' ')} failed (exit ${r.exitCode}): ${firstLines(r.stderr || r.stdout) || 'no output'}`);
    }
    return r.stdout;
  }

  async function save(): Promise<ParsedRules> {
    // One read per table, so a table that does not exist yet (nothing created it) reads as empty.
    const parts = await Promise.all(
      TABLES.map(async (t) => {
        const r = await exec('iptables-save', ['-t', t]);
        if (r.exitCode !== 0) throw new Error(`iptables-save -t ${t} failed (exit ${r.exitCode}): ${firstLines(r.stderr) || 'no output'}`);
        return r.stdout;
      }),
    );
    return parseRules(parts.join('\n'));
  }

  /** Tries the text first, so a refused one never goes in half-way. */
  async function restore(text: string): Promise<void> {
    const test = await exec('iptables-restore', ['-w', '5', '--test', '--noflush'], text);
    if (test.exitCode !== 0) {
      throw new RefusedError(`iptables refused the firewall rules (nothing was changed; the previous ones stay): ${firstLines(test.stderr || test.stdout)}`);
    }
    await run('iptables-restore', ['-w', '5', '--noflush'], text);
  }

  /** Applies a render; on a failure after the test passed, puts the last good text back. */
  async function restoreOrRollBack(text: string): Promise<void> {
    try {
      await restore(text);
    } catch (err) {
      if (good && good.text !== text && !(err instanceof RefusedError)) {
        await restore(good.text).catch((e: unknown) => log.error({ err: String(e) }, 'could not put the last good firewall rules back'));
      }
      throw err;
    }
  }

  /** Makes every jump the only one and the first; Docker may be changing FORWARD meanwhile, so retried. */
  async function fixJumps(states: JumpState[]): Promise<void> {
    let bad = states.filter((s) => !jumpOk(s));
    for (let attempt = 1; bad.length; attempt++) {
      const r = await exec('iptables-restore', ['-w', '5', '--noflush'], jumpFixText(bad));
      if (r.exitCode === 0) return;
      if (attempt >= 3) throw new Error(`could not put the jumps into the CATTLE_* chains first: ${firstLines(r.stderr)}`);
      bad = jumpStates(await save()).filter((s) => !jumpOk(s));
    }
  }

  async function readSysctl(key: string): Promise<string | undefined> {
    const r = await exec('sysctl', ['-n', key]);
    return r.exitCode === 0 ? r.stdout.trim() : undefined;
  }

  /** Sets the sysctls the rules need; returns the ones that had another value. */
  async function ensureSysctls(): Promise<string[]> {
    const changed: string[] = [];
    for (const [key, value] of FIREWALL_SYSCTLS) {
      let had = await readSysctl(key);
      if (had === undefined && key.startsWith('net.bridge.')) {
        // Bridge netfilter is a module on most kernels (built in on this one).
        await exec('modprobe', ['br_netfilter']);
        had = await readSysctl(key);
        if (had === undefined) {
          throw new Error(
            `bridge netfilter is not available (no ${key}; load the br_netfilter module): the anti-spoofing rules need it, so the firewall was not applied`,
          );
        }
      }
      if (had === value) continue;
      await run('sysctl', ['-qw', `${key}=${value}`]);
      changed.push(`${key} was ${had ?? 'unset'}`);
    }
    return changed;
  }

  /** Puts `text` in (when needed) and the jumps first; returns what was found wrong. */
  async function converge(text: string): Promise<string[]> {
    const found: string[] = [];
    let actual = await save();
    const drift = good && good.text === text ? chainDrift(good.expected, actual) : undefined;
    if (drift === undefined || drift.length) {
      if (drift) found.push(...drift);
      await restoreOrRollBack(text);
      actual = await save();
      const rendered = parseRules(text);
      const off = chainDrift(rendered, actual);
      if (off.length && !warnedCanonical) {
        // The render is not in iptables-save's form (another iptables version normalises differently):
        // compare against what the kernel shows for it from now on, or every verify would "repair" it.
        warnedCanonical = true;
        log.warn({ differences: off }, 'iptables-save shows the firewall rules in another form than rendered; drift is judged against what it shows');
      }
      good = { text, expected: off.length ? actual : rendered };
    }
    const jumps = jumpStates(actual);
    const badJumps = jumps.filter((s) => !jumpOk(s));
    if (badJumps.length) {
      await fixJumps(jumps);
      // A missing jump on the first apply is expected, not drift.
      if (drift !== undefined) found.push(...badJumps.map(describeJump));
    }
    return found;
  }

  /**
   * Hairpin mode on the containers' bridge ports. A container reaching its own published port through the
   * host is DNATed back to itself in PREROUTING, and bridge netfilter then bridges the packet straight back
   * out of the port it came in on ("bridged DNAT"), which a bridge only does with hairpin mode on (Docker
   * sets it too when it publishes without its userland proxy). A veth gone meanwhile is no error.
   */
  async function ensureHairpin(veths: ReadonlyMap<string, string>): Promise<void> {
    const now = new Set(veths.values());
    hairpinned = new Set([...hairpinned].filter((v) => now.has(v)));
    for (const veth of now) {
      if (hairpinned.has(veth)) continue;
      const r = await exec('ip', ['link', 'set', 'dev', veth, 'type', 'bridge_slave', 'hairpin', 'on']);
      if (r.exitCode === 0) hairpinned.add(veth);
      else log.debug({ veth, err: firstLines(r.stderr) }, 'could not turn hairpin mode on (the container may have stopped)');
    }
  }

  function firewallInput(inputs: NetworkInputs, veths: ReadonlyMap<string, string>): FirewallInput {
    return {
      subnet: inputs.subnet,
      bridge,
      overlayDev,
      metadataIp,
      containers: inputs.localContainers.map((c) => {
        const veth = veths.get(c.id);
        return { id: c.id, name: c.name, ip: c.ip, ports: c.ports, ...(veth !== undefined ? { veth } : {}) };
      }),
    };
  }

  return {
    lastRendered: () => good?.text,

    async apply(inputs, veths) {
      const text = render(firewallInput(inputs, veths));
      for (const line of text.split('\n')) if (line.startsWith('# not published:')) log.warn(line.slice(2));
      await ensureSysctls();
      const changed = good?.text !== text;
      const found = await converge(text);
      await ensureHairpin(veths);
      if (changed) log.info({ rules: text.split('\n').filter((l) => l.startsWith('-A')).length }, 'firewall rules applied');
      else if (found.length) log.warn({ repaired: found }, 'firewall rules repaired');
    },

    async verify() {
      if (!good) return undefined;
      const found = [...(await ensureSysctls())];
      found.push(...(await converge(good.text)));
      return found.length ? found.join('; ') : undefined;
    },

    async remove() {
      const actual = await save();
      const out: string[] = [];
      for (const table of TABLES) {
        const lines: string[] = [];
        for (const s of jumpStates(actual).filter((x) => x.jump.table === table)) {
          for (let k = 0; k < s.count; k++) lines.push(`-D ${s.jump.chain} ${jumpRule(s.jump)}`);
        }
        for (const chain of FIREWALL_CHAINS[table]) {
          if (actual.chains.get(table)?.has(chain)) lines.push(`-F ${chain}`, `-X ${chain}`);
        }
        if (lines.length) out.push(`*${table}`, ...lines, 'COMMIT');
      }
      good = undefined;
      if (!out.length) return;
      await run('iptables-restore', ['-w', '5', '--noflush'], out.join('\n') + '\n');
      log.info('firewall rules removed');
    },
  };
}
