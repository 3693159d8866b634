// The IPsec part of the managed network (ipsec/apply.ts + charon.ts + render.ts) against real charons
// (root; skipped otherwise): hosts are network namespaces on a switch namespace's bridge (underlay
// 192.0.2.0/24), each with its tunnel address as a /32 on lo and its own createIpsec (charon in its
// namespace). PSK first: CHILD_SAs between all pairs and pings between the tunnel addresses; a peer added
// and removed without touching the others' IKE_SAs (same unique ids, never reloaded); a SIGKILLed charon
// restarted with its connections; a new createIpsec adopting the running charon without dropping an SA;
// verify repairing a lost SA. Then certificate mode (CA and host certificates made here with node-forge,
// the CRL with openssl): a revoked host's tunnels are refused while the others stay up.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, execaSync } from 'execa';
import forge from 'node-forge';
import { silentLogger } from '../../src/common/log.js';
import type { IpsecAuth } from '../../src/agent/capabilities/network/controller.js';
import type { NetworkHost } from '../../src/agent/capabilities/network/inputs.js';
import { createIpsec, type Ipsec } from '../../src/agent/capabilities/network/ipsec/apply.js';
import { procInfo } from '../../src/agent/capabilities/network/ipsec/charon.js';
import { connName } from '../../src/agent/capabilities/network/ipsec/render.js';

const isRoot = process.getuid?.() === 0;
const skip = !isRoot
  ? 'needs root (network namespaces, charon)'
  : !existsSync('/usr/lib/ipsec/charon')
    ? 'charon is not installed'
    : !existsSync('/usr/bin/busybox')
      ? 'busybox (ping) is not installed'
      : false;

const id = randomBytes(3).toString('hex');
const SW = `dt${id}-isw`;
const root = mkdtempSync(join(tmpdir(), 'drover-ipsec-'));
const PSK: IpsecAuth = { kind: 'psk', psk: `test-psk-${randomBytes(12).toString('hex')}` };

interface H {
  n: number;
  ns: string;
  host: NetworkHost;
  dir: string;
  ipsec?: Ipsec;
}
const hosts: H[] = [1, 2, 3, 4].map((n) => ({
  n,
  ns: `dt${id}-ih${n}`,
  host: { hostId: `1h${n}`, name: `h${n}`, agentIp: `192.0.2.1${n}`, tunnelIp: `10.42.255.${n}` },
  dir: join(root, `h${n}`),
}));
const [h1, h2, h3, h4] = hosts as [H, H, H, H];
const charonPids = new Set<number>();

const ip = (...args: string[]) => execa('ip', args, { timeout: 30_000 });

async function ping(from: H, to: H): Promise<boolean> {
  const r = await execa('ip', ['netns', 'exec', from.ns, 'busybox', 'ping', '-c', '1', '-W', '1', '-I', from.host.tunnelIp, to.host.tunnelIp], { reject: false, timeout: 10_000 });
  return r.exitCode === 0;
}

async function waitFor<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function ipsecOf(h: H): Ipsec {
  assert.ok(h.ipsec, `${h.host.name} has an ipsec part`);
  return h.ipsec;
}

/** Unique ids of the IKE_SAs of `h` towards `peer` that carry an INSTALLED CHILD_SA. */
async function upSas(h: H, peer: H): Promise<string[]> {
  const sas = await ipsecOf(h).vici().listSas({ ike: connName(peer.host.hostId) });
  return sas.filter((s) => s.state === 'ESTABLISHED' && Object.values(s['child-sas'] ?? {}).some((c) => c.state === 'INSTALLED')).map((s) => s.uniqueid);
}

async function waitMesh(members: H[], ms = 60_000): Promise<void> {
  for (const a of members) {
    for (const b of members) {
      if (a === b) continue;
      await waitFor(`a CHILD_SA ${a.host.name} → ${b.host.name}`, ms, async () => ((await upSas(a, b)).length ? true : undefined));
      await waitFor(`ping ${a.host.name} → ${b.host.name} over the tunnel`, ms, async () => ((await ping(a, b)) ? true : undefined));
    }
  }
}

/** Unique ids of every IKE_SA per (host, peer), for "untouched" checks. */
async function snapshot(members: H[], except: H[] = []): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const a of members) for (const b of members) if (a !== b && !except.includes(a) && !except.includes(b)) out.set(`${a.host.name}→${b.host.name}`, await upSas(a, b));
  return out;
}

const peersOf = (h: H, members: H[]) => members.filter((m) => m !== h).map((m) => m.host);

function newIpsec(h: H): Ipsec {
  h.ipsec = createIpsec({ log: silentLogger(), dir: h.dir, netns: h.ns, pollMs: 200 });
  return h.ipsec;
}

describe('IPsec between host namespaces', { skip, timeout: 600_000 }, () => {
  before(async () => {
    await ip('netns', 'add', SW);
    await ip('-n', SW, 'link', 'add', 'br0', 'type', 'bridge');
    await ip('-n', SW, 'link', 'set', 'br0', 'up');
    for (const h of hosts) {
      mkdirSync(h.dir, { recursive: true });
      await ip('netns', 'add', h.ns);
      await ip('-n', h.ns, 'link', 'set', 'lo', 'up');
      await ip('link', 'add', `u${id}${h.n}`, 'netns', SW, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns);
      await ip('-n', SW, 'link', 'set', `u${id}${h.n}`, 'master', 'br0', 'up');
      await ip('-n', h.ns, 'addr', 'add', `${h.host.agentIp}/24`, 'dev', 'eth0');
      await ip('-n', h.ns, 'link', 'set', 'eth0', 'up');
      await ip('-n', h.ns, 'addr', 'add', `${h.host.tunnelIp}/32`, 'dev', 'lo');
    }
  });

  after(async () => {
    for (const h of hosts) {
      await h.ipsec?.stop().catch(() => undefined);
      const pid = h.ipsec?.charon.pid;
      if (pid) charonPids.add(pid);
    }
    for (const pid of charonPids) {
      if (procInfo(pid)?.comm === 'charon') {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    for (const h of hosts) await execa('ip', ['netns', 'del', h.ns], { reject: false });
    await execa('ip', ['netns', 'del', SW], { reject: false });
    if (process.env.KEEP_IPSEC_LOGS !== '1') rmSync(root, { recursive: true, force: true });
    else console.log(`charon logs kept in ${root}`);
  });

  const mesh = [h1, h2, h3];

  it('PSK: every pair gets a CHILD_SA and the tunnel addresses ping each other', async () => {
    for (const h of mesh) {
      const s = await newIpsec(h).start();
      assert.match(s.reason, /libipsec|kernel/);
      console.log(`${h.host.name}: ${s.backend} (${s.reason}), overhead ${ipsecOf(h).overhead()}`);
      assert.ok(ipsecOf(h).overhead() >= 65);
      charonPids.add(ipsecOf(h).charon.pid as number);
    }
    // all at once: each side may load before or after its peers
    await Promise.all(mesh.map((h) => ipsecOf(h).apply(h.host, peersOf(h, mesh), PSK)));
    await waitMesh(mesh);
    // Loading at the same time, both sides of a pair may initiate: verify closes the duplicate (the
    // initiator keeps the newest); nothing else may need repair, and then nothing at all.
    for (const h of mesh) {
      const r = await ipsecOf(h).verify([]);
      if (r !== undefined) assert.match(r, /^(closed 1 duplicate IKE_SA\(s\) of drover-\w+(; )?)+$/, `${h.host.name}: ${r}`);
    }
    await waitMesh(mesh);
    for (const h of mesh) assert.equal(await ipsecOf(h).verify([]), undefined, `${h.host.name}: nothing to repair`);
  });

  it('applying the same inputs again loads nothing', async () => {
    const before = new Map(mesh.map((h) => [h.host.name, new Map(ipsecOf(h).loads())]));
    const sas = await snapshot(mesh);
    for (const h of mesh) await ipsecOf(h).apply(h.host, peersOf(h, mesh), PSK);
    for (const h of mesh) assert.deepEqual(ipsecOf(h).loads(), before.get(h.host.name));
    assert.deepEqual(await snapshot(mesh), sas);
  });

  it("a peer joins and leaves without touching the others' IKE_SAs", async () => {
    const sas = await snapshot(mesh);
    const loads = new Map(mesh.map((h) => [h.host.name, new Map(ipsecOf(h).loads())]));
    const all = [h1, h2, h3, h4];
    await newIpsec(h4).start();
    charonPids.add(ipsecOf(h4).charon.pid as number);
    await Promise.all(all.map((h) => ipsecOf(h).apply(h.host, peersOf(h, all), PSK)));
    for (const h of mesh) {
      await waitFor(`${h.host.name} ↔ h4`, 60_000, async () => ((await upSas(h, h4)).length && (await upSas(h4, h)).length ? true : undefined));
      await waitFor(`ping ${h.host.name} → h4`, 30_000, async () => ((await ping(h, h4)) ? true : undefined));
      await waitFor(`ping h4 → ${h.host.name}`, 30_000, async () => ((await ping(h4, h)) ? true : undefined));
    }
    assert.deepEqual(await snapshot(mesh), sas, 'the IKE_SAs among h1..h3 are the same ones');
    for (const h of mesh) {
      for (const [conn, n] of loads.get(h.host.name) ?? []) assert.equal(ipsecOf(h).loads().get(conn), n, `${h.host.name}: ${conn} not reloaded`);
      assert.equal(ipsecOf(h).loads().get(connName(h4.host.hostId)), 1);
    }

    // h4 leaves
    await Promise.all(mesh.map((h) => ipsecOf(h).apply(h.host, peersOf(h, mesh), PSK)));
    await ipsecOf(h4).stop();
    for (const h of mesh) {
      const conns = await ipsecOf(h).vici().getConns();
      assert.ok(!conns.includes(connName(h4.host.hostId)), `${h.host.name} unloaded h4's connection`);
      await waitFor(`${h.host.name} has no SA with h4`, 20_000, async () => ((await ipsecOf(h).vici().listSas({ ike: connName(h4.host.hostId) })).length === 0 ? true : undefined));
    }
    assert.deepEqual(await snapshot(mesh), sas, 'the IKE_SAs among h1..h3 are still the same ones');
    for (const h of mesh) assert.ok(await ping(h, h === h1 ? h2 : h1));
  });

  it('a SIGKILLed charon is started again with its connections and traffic comes back', async () => {
    const pid = ipsecOf(h2).charon.pid as number;
    process.kill(pid, 'SIGKILL');
    const t0 = Date.now();
    await waitFor('h1 → h2 and h3 → h2 again', 60_000, async () => ((await ping(h1, h2)) && (await ping(h3, h2)) ? true : undefined));
    const back = Date.now() - t0;
    const now = ipsecOf(h2).charon.pid as number;
    charonPids.add(now);
    assert.notEqual(now, pid, 'a new charon');
    assert.equal(procInfo(now)?.comm, 'charon');
    assert.deepEqual((await ipsecOf(h2).vici().getConns()).sort(), [connName('1h1'), connName('1h3')]);
    await waitMesh(mesh);
    console.log(`charon SIGKILLed on h2: h1 → h2 and h3 → h2 pinged again after ${back} ms`);
  });

  it('a new createIpsec adopts the running charon and drops no SA', async () => {
    const pid = ipsecOf(h1).charon.pid;
    const sas = await snapshot(mesh);
    await ipsecOf(h1).detach();
    const again = newIpsec(h1);
    const s = await again.start();
    assert.match(s.reason, /adopted/);
    assert.equal(again.charon.pid, pid);
    await again.apply(h1.host, peersOf(h1, mesh), PSK);
    assert.equal(again.loads().size, 0, 'nothing loaded again into the adopted charon');
    assert.deepEqual(await snapshot(mesh), sas);
    assert.ok(await ping(h1, h2));
    assert.equal(await again.verify([]), undefined);
  });

  it('adopted without applied.json: every connection is loaded again, identical, and the SAs stay', async () => {
    const sas = await snapshot(mesh);
    await ipsecOf(h1).detach();
    rmSync(join(h1.dir, 'applied.json'));
    const again = newIpsec(h1);
    assert.match((await again.start()).reason, /adopted/);
    await again.apply(h1.host, peersOf(h1, mesh), PSK);
    assert.equal(again.loads().size, 2, 'both connections sent again');
    assert.deepEqual(await snapshot(mesh), sas, 'charon keeps the SAs of a connection loaded again unchanged');
  });

  it('verify re-initiates a lost SA, and a stale one', async () => {
    // From one IKE_SA per pair (both sides may have initiated at once; verify settles that first).
    await waitFor('one IKE_SA per pair', 30_000, async () => {
      for (const h of mesh) await ipsecOf(h).verify([]);
      const snap = await snapshot(mesh);
      return [...snap.values()].every((ids) => ids.length === 1) ? true : undefined;
    });
    // h3 is the responder to h1: its initiation path is the one only verify takes
    await ipsecOf(h3).vici().terminate({ ike: connName('1h1'), timeoutMs: 3000 });
    await waitFor('the SA h3 → h1 gone', 10_000, async () => ((await upSas(h3, h1)).length === 0 ? true : undefined));
    const r = await ipsecOf(h3).verify([]);
    assert.match(r ?? '', /initiated drover-1h1/);
    await waitFor('h3 → h1 back', 30_000, async () => ((await upSas(h3, h1)).length && (await ping(h3, h1)) ? true : undefined));
    const old = await upSas(h1, h2);
    const r2 = await ipsecOf(h1).verify([h2.host.hostId]);
    assert.match(r2 ?? '', /re-initiated drover-1h2/);
    await waitFor('a new SA h1 → h2', 30_000, async () => {
      const now = await upSas(h1, h2);
      return now.length && !now.some((u) => old.includes(u)) && (await ping(h1, h2)) ? true : undefined;
    });
  });

  it('certificate mode: the hosts authenticate with their certificates; a revoked one is refused, the others stay up', async () => {
    const pki = makePki(mesh.map((h) => h.host.hostId));
    const auth = (h: H, crlPem?: string): IpsecAuth => ({ kind: 'cert', certPem: pki.certs.get(h.host.hostId) ?? '', keyPem: pki.keys.get(h.host.hostId) ?? '', caPem: pki.caPem, ...(crlPem ? { crlPem } : {}) });
    await Promise.all(mesh.map((h) => ipsecOf(h).apply(h.host, peersOf(h, mesh), auth(h))));
    // the changed connections replaced the PSK ones; the responders' side is brought up by verify
    await waitFor('certificate SAs between all pairs', 60_000, async () => {
      for (const h of mesh) await ipsecOf(h).verify([]);
      for (const a of mesh) for (const b of mesh) if (a !== b && !(await upSas(a, b)).length) return undefined;
      return true;
    });
    await waitMesh(mesh);
    const ids = await ipsecOf(h1).vici().listSas({ ike: connName('1h2') });
    assert.equal(ids[0]?.['remote-id'], 'O=drover, CN=1h2', 'h2 authenticated by its certificate subject');

    // Both sides may have initiated at once: verify keeps one IKE_SA per pair (the initiator's newest);
    // "untouched" below is measured from there.
    const keep = await waitFor('one IKE_SA between h1 and h2 each way', 30_000, async () => {
      for (const h of [h1, h2]) await ipsecOf(h).verify([]);
      const snap = await snapshot([h1, h2]);
      return [...snap.values()].every((ids) => ids.length === 1) ? snap : undefined;
    });
    // revoke h3: h1 and h2 get the CRL
    const crl = pki.revoke(h3.host.hostId);
    for (const h of [h1, h2]) await ipsecOf(h).apply(h.host, peersOf(h, mesh), auth(h, crl));
    assert.deepEqual(await snapshot([h1, h2]), keep, 'the CRL changes nothing between h1 and h2');
    // h3's existing SAs were authenticated before the CRL: make them authenticate again
    for (const h of [h1, h2]) await ipsecOf(h).vici().terminate({ ike: connName('1h3'), force: true, timeoutMs: 3000 }).catch(() => undefined);
    for (const h of [h1, h2, h3]) await ipsecOf(h).verify([]);
    await new Promise((r) => setTimeout(r, 8000));
    for (const h of [h1, h2, h3]) await ipsecOf(h).verify([]);
    await new Promise((r) => setTimeout(r, 5000));
    assert.deepEqual(await upSas(h1, h3), [], 'h1 refuses h3');
    assert.deepEqual(await upSas(h2, h3), [], 'h2 refuses h3');
    assert.equal(await ping(h1, h3), false);
    const logs = [h1, h2].map((h) => readFileSync(join(h.dir, 'charon.log'), 'utf8')).join('\n');
    assert.match(logs, /revoked/i, "charon's log says why");
    assert.deepEqual(await snapshot([h1, h2]), keep, 'h1 ↔ h2 untouched');
    assert.ok(await ping(h1, h2));
  });
});

/**
 * A CA and a certificate per host (as server/domain/host-ca.ts makes them), and a CRL by openssl. The CRL
 * must carry an authorityKeyIdentifier: charon 5.9 looks a cached CRL up by the issuer's key id only, and
 * one without it is loaded but never consulted ("certificate status is not available").
 */
function makePki(hostIds: string[]): { caPem: string; certs: Map<string, string>; keys: Map<string, string>; revoke(hostId: string): string } {
  const rsa = () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    const key = forge.pki.privateKeyFromPem(pem);
    return { pem, key, pub: forge.pki.setRsaPublicKey(key.n, key.e) };
  };
  const ca = rsa();
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = ca.pub;
  caCert.serialNumber = '01';
  caCert.validity.notBefore = new Date(Date.now() - 60_000);
  caCert.validity.notAfter = new Date(Date.now() + 86_400_000);
  const caSubject = [
    { name: 'organizationName', value: 'drover' },
    { name: 'commonName', value: 'drover test CA' },
  ];
  caCert.setSubject(caSubject);
  caCert.setIssuer(caSubject);
  caCert.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }, { name: 'subjectKeyIdentifier' }]);
  caCert.sign(ca.key, forge.md.sha256.create());
  const caPem = forge.pki.certificateToPem(caCert);
  const certs = new Map<string, string>();
  const keys = new Map<string, string>();
  hostIds.forEach((hid, i) => {
    const k = rsa();
    const c = forge.pki.createCertificate();
    c.publicKey = k.pub;
    c.serialNumber = (0x10 + i).toString(16).padStart(2, '0');
    c.validity.notBefore = new Date(Date.now() - 60_000);
    c.validity.notAfter = new Date(Date.now() + 86_400_000);
    c.setSubject([
      { name: 'organizationName', value: 'drover' },
      { name: 'commonName', value: hid },
    ]);
    c.setIssuer(caCert.subject.attributes);
    c.setExtensions([{ name: 'basicConstraints', cA: false }, { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true }, { name: 'subjectAltName', altNames: [{ type: 2, value: hid }] }]);
    c.sign(ca.key, forge.md.sha256.create());
    certs.set(hid, forge.pki.certificateToPem(c));
    keys.set(hid, k.pem);
  });
  const d = join(root, 'ca');
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'ca.pem'), caPem);
  writeFileSync(join(d, 'ca.key'), ca.pem);
  writeFileSync(join(d, 'index.txt'), '');
  writeFileSync(join(d, 'crlnumber'), '01\n');
  writeFileSync(join(d, 'openssl.cnf'), `[ca]\ndefault_ca = d\n[d]\ndatabase = ${d}/index.txt\ncrlnumber = ${d}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\ncrl_extensions = crl_ext\n[crl_ext]\nauthorityKeyIdentifier = keyid:always\n`);
  return {
    caPem,
    certs,
    keys,
    revoke(hostId) {
      const f = join(d, `${hostId}.pem`);
      writeFileSync(f, certs.get(hostId) ?? '');
      const base = ['-config', join(d, 'openssl.cnf'), '-keyfile', join(d, 'ca.key'), '-cert', join(d, 'ca.pem')];
      const run = (args: string[]) => {
        const r = execaSync('openssl', ['ca', ...base, ...args], { reject: false });
        assert.equal(r.exitCode, 0, `openssl ca ${args.join(' ')}: ${String(r.stderr)}`);
      };
      run(['-revoke', f]);
      run(['-gencrl', '-out', join(d, 'crl.pem')]);
      return readFileSync(join(d, 'crl.pem'), 'utf8');
    },
  };
}
