// charon's configuration for this host (pure): one IKEv2 connection per peer host, named after the peer
// (`drover-<hostId>`), with one CHILD_SA in tunnel mode whose traffic selectors are exactly the two
// tunnel addresses (README "IPsec mode"), plus the credentials: a shared secret per peer (PSK) or our key,
// the CA and its CRL (certificate mode). Nothing here depends on containers, so a connection changes
// only when its peer (or the authentication) does, and the applier compares connections one by one.
//
// Who initiates: the host with the lower host id (plain string order, the same on both sides). It starts
// the SA when the connection is loaded, restarts it when DPD finds the peer dead, and rekeys; the other
// side has start_action none, clears on DPD and rekeys only after twice the time (so it never does while
// the initiator is healthy: rekey collisions are avoided, and an SA still gets rekeyed if the initiator's
// rekey failed). The applier makes the responder initiate too when it loads a connection that has no SA
// (the peer may have tried before we had the configuration: netlab §6.7), and after a charon restart.
import { z } from 'zod';
import type { IpsecAuth } from '../controller.js';
import type { NetworkHost } from '../inputs.js';
import type { ViciInput } from './vici/codec.js';

/** IKE proposals, most preferred first (charon picks the first one both sides support). */
export const IKE_PROPOSALS = ['aes128gcm16-prfsha256-modp2048', 'aes128-sha256-modp2048', 'aes128-sha1-modp2048'] as const;
/** ESP proposals (with PFS on rekey); the MTU is computed for their worst case (charon.ts). */
export const ESP_PROPOSALS = ['aes128gcm16-modp2048', 'aes128-sha1-modp2048'] as const;

export const CONN_PREFIX = 'drover-';
export const SECRET_PREFIX = 'drover-psk-';

export const connName = (hostId: string): string => `${CONN_PREFIX}${hostId}`;

/** charon's identity of a host in certificate mode: the subject the control plane's CA gives it (server/domain/host-ca.ts). */
export const certIdentity = (hostId: string): string => `O=drover, CN=${hostId}`;

/** Whether `self` initiates (and rekeys) the SA with `peer`. */
export const isInitiator = (self: Pick<NetworkHost, 'hostId'>, peer: Pick<NetworkHost, 'hostId'>): boolean => self.hostId < peer.hostId;

export interface SharedSecret {
  id: string;
  type: 'IKE';
  data: string;
  owners: string[];
}

export interface Credential {
  kind: 'key' | 'ca' | 'crl';
  data: string;
}

export interface RenderedIpsec {
  /** By connection name: the load-conn section (the name is the key of the load-conn message). */
  conns: Record<string, ViciInput>;
  /** PSK mode: one secret per peer, owned by both identities. */
  shared: SharedSecret[];
  /** Certificate mode: our private key, the CA certificate, the CRL (when there is one). */
  creds: Credential[];
}

const ipv4 = z.string().regex(/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/, 'an IPv4 address');
const Host = z.object({
  // a VICI key is at most 255 bytes and goes into a DN in certificate mode: keep host ids plain
  hostId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/, 'letters, digits, ".", "_" or "-", at most 101'),
  name: z.string(),
  agentIp: ipv4,
  tunnelIp: ipv4,
});

function checkHost(h: NetworkHost, what: string): void {
  const r = Host.safeParse(h);
  if (!r.success) throw new Error(`IPsec: ${what} ${h.hostId || h.name}: ${r.error.issues.map((i) => `${i.path.join('.')} must be ${i.message}`).join('; ')}`);
}

function conn(self: NetworkHost, peer: NetworkHost, auth: IpsecAuth): ViciInput {
  const initiator = isInitiator(self, peer);
  const name = connName(peer.hostId);
  const [local, remote]: [ViciInput, ViciInput] =
    auth.kind === 'psk'
      ? [
          { auth: 'psk', id: self.agentIp },
          { auth: 'psk', id: peer.agentIp },
        ]
      : [
          { auth: 'pubkey', id: certIdentity(self.hostId), certs: [auth.certPem] },
          // cacerts: only certificates of our CA are accepted; revocation relaxed = refused when a loaded
          // CRL lists the certificate, accepted when there is no CRL at all
          { auth: 'pubkey', id: certIdentity(peer.hostId), cacerts: [auth.caPem], revocation: 'relaxed' },
        ];
  return {
    version: '2',
    local_addrs: [self.agentIp],
    remote_addrs: [peer.agentIp],
    // the underlay only ever carries UDP 500/4500 (libipsec forces it anyway)
    encap: 'yes',
    mobike: 'no',
    proposals: [...IKE_PROPOSALS],
    dpd_delay: '5s',
    rekey_time: initiator ? '4h' : '8h',
    local,
    remote,
    children: {
      [name]: {
        mode: 'tunnel',
        local_ts: [`${self.tunnelIp}/32`],
        remote_ts: [`${peer.tunnelIp}/32`],
        esp_proposals: [...ESP_PROPOSALS],
        rekey_time: initiator ? '1h' : '2h',
        start_action: initiator ? 'start' : 'none',
        dpd_action: initiator ? 'restart' : 'clear',
        close_action: 'none',
      },
    },
  };
}

export function renderIpsec(self: NetworkHost, peers: readonly NetworkHost[], auth: IpsecAuth): RenderedIpsec {
  checkHost(self, 'this host');
  const seen = new Set<string>();
  for (const p of peers) {
    checkHost(p, 'peer');
    if (p.hostId === self.hostId) throw new Error(`IPsec: host ${self.hostId} is listed as its own peer`);
    if (seen.has(p.hostId)) throw new Error(`IPsec: peer ${p.hostId} is listed twice`);
    seen.add(p.hostId);
  }
  if (auth.kind === 'psk' && auth.psk.length < 16) throw new Error('IPsec: the pre-shared key must be at least 16 characters');
  const sorted = [...peers].sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
  const conns: Record<string, ViciInput> = {};
  const shared: SharedSecret[] = [];
  for (const p of sorted) {
    conns[connName(p.hostId)] = conn(self, p, auth);
    if (auth.kind === 'psk') shared.push({ id: `${SECRET_PREFIX}${p.hostId}`, type: 'IKE', data: auth.psk, owners: [self.agentIp, p.agentIp] });
  }
  const creds: Credential[] =
    auth.kind === 'cert'
      ? [
          { kind: 'key', data: auth.keyPem },
          { kind: 'ca', data: auth.caPem },
          ...(auth.crlPem ? [{ kind: 'crl' as const, data: auth.crlPem }] : []),
        ]
      : [];
  return { conns, shared, creds };
}
