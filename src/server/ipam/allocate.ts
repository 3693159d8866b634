// Address allocation on an environment's subnet, inside the caller's transaction.
//
// Like the original: a random start inside the usable range, then sequential with wrap-around, skipping
// used addresses (a random start avoids handing out an address that other hosts may still have cached).
// A requested address is honoured when free; otherwise a random one is given, or, with `strict`, an
// error. The (env, ip) primary key makes a collision impossible even across processes.
import { randomInt } from 'node:crypto';
import type { Tx } from '../db/store.js';
import { ConflictError, ValidationError } from '../../common/errors.js';
import { inRange, intToIp, ipToInt, parseSubnet } from './cidr.js';

export interface AllocateRequest {
  envId: string;
  subnet: string;
  /** Who holds the address: a service slot (`svc:<serviceId>:<launchConfig>:<index>`) or `ctr:<containerId>`. */
  owner: string;
  requested?: string;
  /** Fail instead of falling back to a random address when `requested` is taken. */
  strict?: boolean;
}

/** Point lookups from the random start before one full read of the used addresses (a dense subnet). */
const PROBES = 64;

export function allocateIp(tx: Tx, req: AllocateRequest): string {
  const st = (key: string, sql: string) => tx.store.statement(`ipam:${key}`, () => sql);
  const held = st('held', 'SELECT ip FROM ip_allocations WHERE env_id = ? AND owner = ?').get(req.envId, req.owner) as
    | { ip: string }
    | undefined;
  if (held) return held.ip;
  const insert = st('insert', 'INSERT INTO ip_allocations (env_id, ip, owner) VALUES (?, ?, ?)');
  const isUsed = st('used', 'SELECT 1 FROM ip_allocations WHERE env_id = ? AND ip = ?');

  const subnet = parseSubnet(req.subnet);
  if (req.requested !== undefined) {
    const want = ipToInt(req.requested);
    if (!inRange(subnet, want)) {
      throw new ValidationError(
        'InvalidRequestedIp',
        `requested address ${req.requested} is outside the usable range ${intToIp(subnet.first)}-${intToIp(subnet.last)} of ${subnet.cidr}`,
        'requestedIpAddress',
      );
    }
    if (!isUsed.get(req.envId, req.requested)) {
      insert.run(req.envId, req.requested, req.owner);
      return req.requested;
    }
    if (req.strict) {
      throw new ConflictError('IpAddressInUse', `requested address ${req.requested} is already in use`, 'requestedIpAddress');
    }
  }

  // Sequential from a random start, as point lookups (O(log n) each): in a sparse subnet the first
  // candidate is almost always free. Only when PROBES in a row are taken is the used set read once
  // (O(n)), which also tells an exhausted subnet apart. No per-allocation COUNT: that made allocating
  // N addresses O(N²).
  const size = subnet.last - subnet.first + 1;
  const start = randomInt(size);
  const probes = Math.min(PROBES, size);
  for (let i = 0; i < probes; i++) {
    const ip = intToIp(subnet.first + ((start + i) % size));
    if (!isUsed.get(req.envId, ip)) {
      insert.run(req.envId, ip, req.owner);
      return ip;
    }
  }
  const used = new Set(
    (st('all', 'SELECT ip FROM ip_allocations WHERE env_id = ?').all(req.envId) as { ip: string }[]).map((r) => r.ip),
  );
  for (let i = probes; i < size; i++) {
    const ip = intToIp(subnet.first + ((start + i) % size));
    if (!used.has(ip)) {
      insert.run(req.envId, ip, req.owner);
      return ip;
    }
  }
  throw new ConflictError('SubnetExhausted', `no free address left in ${subnet.cidr} (${size} usable addresses in use)`);
}

export function releaseIp(tx: Tx, envId: string, owner: string): void {
  tx.store.statement('ipam:release', () => 'DELETE FROM ip_allocations WHERE env_id = ? AND owner = ?').run(envId, owner);
}

/** Gives `from`'s address to `to` (which must hold none); false when `from` held none. */
export function transferIp(tx: Tx, envId: string, from: string, to: string): boolean {
  return tx.store.statement('ipam:transfer', () => 'UPDATE ip_allocations SET owner = ? WHERE env_id = ? AND owner = ?').run(to, envId, from).changes > 0;
}

export function releaseOwnersWithPrefix(tx: Tx, envId: string, prefix: string): void {
  // A range on the (env_id, owner) index, not a scan of every allocation of the environment.
  tx.store
    .statement('ipam:releasePrefix', () => 'DELETE FROM ip_allocations WHERE env_id = ? AND owner >= ? AND owner < ?')
    .run(envId, prefix, `${prefix}\uffff`);
}

export function slotOwner(serviceId: string, launchConfigName: string, index: number): string {
  return `svc:${serviceId}:${launchConfigName}:${index}`;
}

export function containerOwner(containerId: string): string {
  return `ctr:${containerId}`;
}
