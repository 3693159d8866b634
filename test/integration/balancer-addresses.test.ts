// The balancer instances' managed addresses on the real kernel (root; skipped otherwise), in a throwaway
// network namespace (the code's `ip` commands run there through netnsSystem). They are /32s on `lo` with
// the balancer label: sync() makes exactly the set asked local, replaces a set by another (removes what
// is no longer asked, adds the new), leaves none for an empty set, removes a labelled address added by
// hand (and one of the right address with another prefix) at the next sync and puts back one removed by
// hand, runs no change for the same set twice; close() removes them all. The rest of `lo` (127.0.0.1,
// the network's tunnel address labelled `lo:drover`, an address the admin added) is never touched.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { netnsSystem, type DataplaneSystem } from '../../src/agent/capabilities/network/dataplane/apply.js';
import { TUNNEL_LABEL } from '../../src/agent/capabilities/network/dataplane/render.js';
import { BALANCER_LABEL, balancerAddresses } from '../../src/agent/capabilities/balancer/addresses.js';

const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root (creates a network namespace and addresses in it)';
const NS = `drv-lbaddr-${randomBytes(3).toString('hex')}`;
const A = '10.42.0.9';
const B = '10.42.0.10';
const C = '10.42.7.200';
const D = '10.42.0.99';
/** Not the balancer's: the network's tunnel address and one the admin put on lo. */
const TUNNEL = '10.42.0.11';
const ADMIN = '192.0.2.7';

async function ipn(...args: string[]): Promise<string> {
  const r = await execa('ip', ['-n', NS, ...args], { reject: false, timeout: 30_000 });
  assert.equal(r.exitCode, 0, `ip -n ${NS} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

interface LinkJson {
  flags: string[];
  addr_info?: { family: string; local: string; prefixlen: number; label?: string }[];
}

/** Every IPv4 address of lo: `label ip/prefix`, sorted. */
async function lo(): Promise<string[]> {
  const out = await ipn('-j', '-4', 'addr', 'show', 'dev', 'lo');
  const links = (out.trim() ? JSON.parse(out) : []) as LinkJson[];
  return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.label ?? '-'} ${a.local}/${a.prefixlen}`)).sort();
}

/** The balancer's addresses on lo (`ip/prefix`, sorted). */
async function ours(): Promise<string[]> {
  return (await lo()).filter((x) => x.startsWith(`${BALANCER_LABEL} `)).map((x) => x.slice(BALANCER_LABEL.length + 1));
}

/** What is on lo besides the balancer's: exactly what the namespace was given. */
async function others(): Promise<string[]> {
  return (await lo()).filter((x) => !x.startsWith(`${BALANCER_LABEL} `));
}
const OTHERS = [`${TUNNEL_LABEL} ${TUNNEL}/32`, `lo 127.0.0.1/8`, `lo ${ADMIN}/32`].sort();

/** The address is local in the namespace (what HAProxy binds, what the kernel answers for). */
async function isLocal(ip: string): Promise<boolean> {
  const out = await ipn('route', 'show', 'table', 'local', 'type', 'local', `${ip}/32`);
  return out.trim() !== '';
}

/** netnsSystem(NS), with every command recorded. */
function recording(): { system: DataplaneSystem; runs: string[] } {
  const inner = netnsSystem(NS);
  const runs: string[] = [];
  return {
    runs,
    system: {
      run(file, args, input) {
        runs.push(`${file} ${args.join(' ')}`);
        return inner.run(file, args, input);
      },
      readSysctl: (p) => inner.readSysctl(p),
      writeSysctl: (p, v) => inner.writeSysctl(p, v),
    },
  };
}

/** The commands that change something (everything but showing). */
const changes = (runs: string[]): string[] => runs.filter((r) => !/ show /.test(r));
const add = (cidr: string) => `ip addr add ${cidr} dev lo label ${BALANCER_LABEL}`;
const del = (cidr: string) => `ip addr del ${cidr} dev lo label ${BALANCER_LABEL}`;

describe('balancer addresses on the kernel', { skip, timeout: 120_000 }, () => {
  before(async () => {
    await execa('ip', ['netns', 'add', NS]);
    await ipn('link', 'set', 'lo', 'up');
    await ipn('addr', 'add', `${TUNNEL}/32`, 'dev', 'lo', 'label', TUNNEL_LABEL);
    await ipn('addr', 'add', `${ADMIN}/32`, 'dev', 'lo');
    assert.deepEqual(await others(), OTHERS);
  });

  after(async () => {
    await execa('ip', ['netns', 'del', NS], { reject: false });
  });

  it('refuses what is not an IPv4 address before touching the kernel, and a label that is not lo:<name>', async () => {
    const rec = recording();
    const lb = balancerAddresses(rec.system);
    await assert.rejects(lb.sync([A, '10.42.0.300']), /not an IPv4 address for a balancer: 10\.42\.0\.300/);
    await assert.rejects(lb.sync(['fd00::1']), /not an IPv4 address/);
    await assert.rejects(lb.sync(['10.42.0.9/32']), /not an IPv4 address/);
    assert.deepEqual(rec.runs, []);
    assert.throws(() => balancerAddresses(rec.system, 'eth0:lb'), /lo:<at most 12 characters>/);
    assert.throws(() => balancerAddresses(rec.system, 'lo:a-name-too-long'), /lo:<at most 12 characters>/);
    assert.deepEqual(await ours(), []);
  });

  it('sync() replaces the set, runs no change for the same set, leaves none for an empty one, repairs drift; close() removes them', async () => {
    const rec = recording();
    const lb = balancerAddresses(rec.system);

    // Nothing → [a,b]: exactly those /32s, local, with the label.
    await lb.sync([A, B]);
    assert.deepEqual(await ours(), [`${A}/32`, `${B}/32`].sort());
    assert.ok(await isLocal(A));
    assert.ok(await isLocal(B));
    assert.deepEqual(changes(rec.runs), [add(`${A}/32`), add(`${B}/32`)]);
    assert.deepEqual(await others(), OTHERS);

    // [a,b] → [b,c]: a removed, c added, b untouched.
    rec.runs.length = 0;
    await lb.sync([B, C]);
    assert.deepEqual(await ours(), [`${B}/32`, `${C}/32`].sort());
    assert.deepEqual(changes(rec.runs), [del(`${A}/32`), add(`${C}/32`)]);
    assert.equal(await isLocal(A), false);
    assert.ok(await isLocal(C));

    // The same set again (in another order, with a duplicate): nothing changes.
    rec.runs.length = 0;
    await lb.sync([C, B, C]);
    assert.deepEqual(await ours(), [`${B}/32`, `${C}/32`].sort());
    assert.deepEqual(changes(rec.runs), []);

    // Drift: a labelled address added by hand goes, a wanted one with another prefix is made a /32 again,
    // a wanted one removed by hand comes back.
    await ipn('addr', 'add', `${D}/32`, 'dev', 'lo', 'label', BALANCER_LABEL);
    await ipn('addr', 'del', `${C}/32`, 'dev', 'lo');
    await ipn('addr', 'add', `${C}/24`, 'dev', 'lo', 'label', BALANCER_LABEL);
    await ipn('addr', 'del', `${B}/32`, 'dev', 'lo');
    rec.runs.length = 0;
    await lb.sync([B, C]);
    assert.deepEqual(await ours(), [`${B}/32`, `${C}/32`].sort());
    assert.deepEqual(changes(rec.runs).sort(), [add(`${B}/32`), add(`${C}/32`), del(`${C}/24`), del(`${D}/32`)].sort());
    assert.equal(await isLocal(D), false);
    assert.deepEqual(await others(), OTHERS);

    // Empty: none left, the rest of lo as it was.
    await lb.sync([]);
    assert.deepEqual(await ours(), []);
    assert.equal(await isLocal(B), false);
    assert.deepEqual(await others(), OTHERS);

    // From empty to a set again, then close(): all of them gone, the rest of lo kept; a second close() is fine.
    await lb.sync([A, C]);
    assert.deepEqual(await ours(), [`${A}/32`, `${C}/32`].sort());
    await lb.close();
    assert.deepEqual(await ours(), []);
    assert.equal(await isLocal(A), false);
    assert.deepEqual(await others(), OTHERS);
    rec.runs.length = 0;
    await lb.close();
    assert.deepEqual(changes(rec.runs), []);
  });

  it('an address already on lo under another label is left as it is (local already), and sync does not fail', async () => {
    const lb = balancerAddresses(netnsSystem(NS));
    await lb.sync([ADMIN, A]);
    assert.deepEqual(await ours(), [`${A}/32`]);
    assert.ok(await isLocal(ADMIN));
    assert.deepEqual(await others(), OTHERS, 'the admin’s address is untouched');
    await lb.close();
    assert.deepEqual(await others(), OTHERS);
    assert.deepEqual(await ours(), []);
  });

  it('two labels are two sets: one balancerAddresses never touches the other label', async () => {
    const one = balancerAddresses(netnsSystem(NS));
    const two = balancerAddresses(netnsSystem(NS), 'lo:drv-lb2');
    await one.sync([A]);
    await two.sync([B]);
    await one.sync([]);
    assert.ok(await isLocal(B));
    assert.deepEqual((await lo()).filter((x) => x.startsWith('lo:drv-lb2 ')), [`lo:drv-lb2 ${B}/32`]);
    await two.close();
    assert.equal(await isLocal(B), false);
    assert.deepEqual(await others(), OTHERS);
  });
});
