// charon's configuration (ipsec/render.ts, pure): golden renders in test/golden/network-ipsec/*.json
// (regenerate with UPDATE_GOLDEN=1 after a deliberate change and review the diff), then the rules behind
// them one by one, the overhead arithmetic of charon.ts and the input checks.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IpsecAuth } from '../../src/agent/capabilities/network/controller.js';
import type { NetworkHost } from '../../src/agent/capabilities/network/inputs.js';
import { ESP_PROPOSALS, IKE_PROPOSALS, connName, isInitiator, renderIpsec } from '../../src/agent/capabilities/network/ipsec/render.js';
import { espOverhead, espOverheadOf, ipsecOverhead, libipsecMtu, parseStrongswanConf, renderStrongswanConf } from '../../src/agent/capabilities/network/ipsec/charon.js';
import type { ViciInput } from '../../src/agent/capabilities/network/ipsec/vici/codec.js';

const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden', 'network-ipsec');

function golden(name: string, value: unknown): void {
  const text = JSON.stringify(value, null, 2) + '\n';
  const file = join(GOLDEN_DIR, `${name}.json`);
  if (process.env.UPDATE_GOLDEN === '1') {
    mkdirSync(GOLDEN_DIR, { recursive: true });
    writeFileSync(file, text);
  }
  assert.ok(existsSync(file), `${file} is missing (run with UPDATE_GOLDEN=1 to write it, then review it)`);
  assert.equal(text, readFileSync(file, 'utf8'), `${name}.json differs (UPDATE_GOLDEN=1 rewrites it after a deliberate change)`);
}

const h = (n: number): NetworkHost => ({ hostId: `1h${n}`, name: `host${n}`, agentIp: `192.0.2.1${n}`, tunnelIp: `10.42.255.${n}` });
const psk: IpsecAuth = { kind: 'psk', psk: 'test-psk-0123456789abcdef' };
const cert: IpsecAuth = { kind: 'cert', certPem: '-----BEGIN CERTIFICATE-----\nSELF\n-----END CERTIFICATE-----\n', keyPem: '-----BEGIN RSA PRIVATE KEY-----\nKEY\n-----END RSA PRIVATE KEY-----\n', caPem: '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n', crlPem: '-----BEGIN X509 CRL-----\nCRL\n-----END X509 CRL-----\n' };

const section = (v: ViciInput[string]): ViciInput => {
  assert.ok(v && typeof v === 'object' && !Array.isArray(v) && !Buffer.isBuffer(v));
  return v as ViciInput;
};
const child = (c: ViciInput | undefined, name: string): ViciInput => section(section(c?.children)[name]);

describe('renderIpsec: golden output', () => {
  it('PSK, the middle host of three (responder to 1h1, initiator to 1h3)', () => golden('psk-two-peers', renderIpsec(h(2), [h(3), h(1)], psk)));
  it('certificate mode with a CRL', () => golden('cert', renderIpsec(h(1), [h(2)], cert)));
});

describe('renderIpsec: rules', () => {
  const r = renderIpsec(h(2), [h(3), h(1)], psk);
  it('one connection per peer, named after it, sorted', () => {
    assert.deepEqual(Object.keys(r.conns), ['drover-1h1', 'drover-1h3']);
    assert.equal(connName('x'), 'drover-x');
  });
  it('addresses, encap, proposals, one tunnel-mode CHILD_SA between the tunnel addresses', () => {
    const c = r.conns['drover-1h3'];
    assert.ok(c);
    assert.equal(c.version, '2');
    assert.deepEqual(c.local_addrs, ['192.0.2.12']);
    assert.deepEqual(c.remote_addrs, ['192.0.2.13']);
    assert.equal(c.encap, 'yes');
    assert.deepEqual(c.proposals, [...IKE_PROPOSALS]);
    assert.equal(c.dpd_delay, '5s');
    const kids = section(c.children);
    assert.deepEqual(Object.keys(kids), ['drover-1h3']);
    const k = child(c, 'drover-1h3');
    assert.equal(k.mode, 'tunnel');
    assert.deepEqual(k.local_ts, ['10.42.255.2/32']);
    assert.deepEqual(k.remote_ts, ['10.42.255.3/32']);
    assert.deepEqual(k.esp_proposals, [...ESP_PROPOSALS]);
  });
  it('the lower host id initiates, restarts on DPD and rekeys first; the other waits', () => {
    assert.equal(isInitiator(h(2), h(3)), true);
    assert.equal(isInitiator(h(2), h(1)), false);
    const ini = child(r.conns['drover-1h3'], 'drover-1h3');
    const resp = child(r.conns['drover-1h1'], 'drover-1h1');
    assert.equal(ini.start_action, 'start');
    assert.equal(ini.dpd_action, 'restart');
    assert.equal(resp.start_action, 'none');
    assert.equal(resp.dpd_action, 'clear');
    assert.equal(r.conns['drover-1h3']?.rekey_time, '4h');
    assert.equal(r.conns['drover-1h1']?.rekey_time, '8h');
    assert.equal(ini.rekey_time, '1h');
    assert.equal(resp.rekey_time, '2h');
    // the peer renders the mirror image
    const other = renderIpsec(h(1), [h(2)], psk);
    assert.equal(child(other.conns['drover-1h2'], 'drover-1h2').start_action, 'start');
  });
  it('PSK: ids are the agent addresses; one secret per peer owned by both', () => {
    const c = r.conns['drover-1h1'];
    assert.deepEqual(c?.local, { auth: 'psk', id: '192.0.2.12' });
    assert.deepEqual(c?.remote, { auth: 'psk', id: '192.0.2.11' });
    assert.deepEqual(r.shared, [
      { id: 'drover-psk-1h1', type: 'IKE', data: psk.kind === 'psk' ? psk.psk : '', owners: ['192.0.2.12', '192.0.2.11'] },
      { id: 'drover-psk-1h3', type: 'IKE', data: psk.kind === 'psk' ? psk.psk : '', owners: ['192.0.2.12', '192.0.2.13'] },
    ]);
    assert.deepEqual(r.creds, []);
  });
  it('certificate mode: our certificate, the peer by its subject under our CA, the CRL loaded', () => {
    const c = renderIpsec(h(1), [h(2)], cert);
    const conn = c.conns['drover-1h2'];
    assert.deepEqual(conn?.local, { auth: 'pubkey', id: 'O=drover, CN=1h1', certs: [cert.kind === 'cert' ? cert.certPem : ''] });
    assert.deepEqual(section(conn?.remote).id, 'O=drover, CN=1h2');
    assert.deepEqual(section(conn?.remote).cacerts, [cert.kind === 'cert' ? cert.caPem : '']);
    assert.deepEqual(c.shared, []);
    assert.deepEqual(
      c.creds.map((x) => x.kind),
      ['key', 'ca', 'crl'],
    );
    assert.deepEqual(
      renderIpsec(h(1), [h(2)], { ...cert, crlPem: undefined } as IpsecAuth).creds.map((x) => x.kind),
      ['key', 'ca'],
    );
  });
  it('a peer change leaves the other connections identical', () => {
    const a = renderIpsec(h(1), [h(2), h(3)], psk);
    const b = renderIpsec(h(1), [h(2), h(4)], psk);
    assert.deepEqual(a.conns['drover-1h2'], b.conns['drover-1h2']);
  });
  it('refuses bad input with what is wrong', () => {
    assert.throws(() => renderIpsec(h(1), [h(1)], psk), /its own peer/);
    assert.throws(() => renderIpsec(h(1), [h(2), h(2)], psk), /twice/);
    assert.throws(() => renderIpsec(h(1), [{ ...h(2), tunnelIp: '10.42.255' }], psk), /tunnelIp must be an IPv4 address/);
    assert.throws(() => renderIpsec(h(1), [{ ...h(2), hostId: 'a b' }], psk), /hostId/);
    assert.throws(() => renderIpsec(h(1), [h(2)], { kind: 'psk', psk: 'short' }), /at least 16/);
  });
});

describe('charon.ts: overhead and configuration', () => {
  it('ESP-in-UDP tunnel overhead per proposal, worst case over ours', () => {
    // 20 IP + 8 UDP + 8 ESP + 8 IV + 3 pad + 2 + 16 ICV
    assert.equal(espOverheadOf('aes128gcm16-modp2048'), 65);
    // 20 + 8 + 8 + 16 IV + 15 pad + 2 + 12 (HMAC-SHA1-96)
    assert.equal(espOverheadOf('aes128-sha1-modp2048'), 81);
    assert.equal(espOverheadOf('aes128-sha256'), 85);
    assert.equal(espOverhead(), 81);
    assert.throws(() => espOverheadOf('chacha20poly1305'), /unknown encryption/);
  });
  it('libipsec: the TUN is sized so it never bounds more than ESP; a larger underlay is covered', () => {
    assert.equal(libipsecMtu(1500), 1419);
    assert.equal(ipsecOverhead('libipsec', 1500, libipsecMtu(1500)), 81);
    assert.equal(ipsecOverhead('libipsec', 9000, 1400), 7600);
    assert.equal(ipsecOverhead('kernel', 9000, undefined), 81);
  });
  it('strongswan.conf: plugin order, critical plugins, socket and MTU, read back', () => {
    const lib = renderStrongswanConf({ dir: '/var/lib/drover/ipsec', backend: 'libipsec', tunMtu: 1419 });
    assert.match(lib, /load = .*\bkdf\b.*revocation constraints kernel-libipsec! kernel-netlink socket-default! vici!/);
    assert.match(lib, /socket = unix:\/\/\/var\/lib\/drover\/ipsec\/run\/charon.vici/);
    assert.match(lib, /retransmit_timeout = 1\n\s*retransmit_base = 1.4\n\s*retransmit_tries = 3/);
    assert.deepEqual(parseStrongswanConf(lib), { backend: 'libipsec', tunMtu: 1419 });
    const k = renderStrongswanConf({ dir: '/d', backend: 'kernel', tunMtu: 1400 });
    assert.doesNotMatch(k, /kernel-libipsec!/);
    assert.equal(parseStrongswanConf(k).backend, 'kernel');
  });
});
