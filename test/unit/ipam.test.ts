import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Store } from '../../src/server/db/store.js';
import { allocateIp, releaseIp } from '../../src/server/ipam/allocate.js';
import { intToIp, ipToInt, parseSubnet } from '../../src/server/ipam/cidr.js';
import { createEnvironment } from '../../src/server/domain/environments.js';
import { cleanup, tempDir } from '../helpers/server.js';

test('subnet arithmetic: usable range .0.2 … .255.250 and gateway .0.1 for the default /16', () => {
  const s = parseSubnet('10.42.0.0/16');
  assert.equal(s.gateway, '10.42.0.1');
  assert.equal(intToIp(s.first), '10.42.0.2');
  assert.equal(intToIp(s.last), '10.42.255.250');
  assert.equal(parseSubnet('10.42.7.9/16').cidr, '10.42.0.0/16');
  assert.throws(() => parseSubnet('10.42.0.0'), /not an IPv4 subnet/);
  assert.throws(() => ipToInt('10.42.0.256'), /not an IPv4 address/);
});

test('allocation: requested address honoured, taken one falls back (or fails when strict), owner keeps its address', () => {
  const dir = tempDir();
  const store = Store.openDir(dir);
  try {
    const env = createEnvironment(store, { name: 'e1', network: { subnet: '10.42.0.0/16' } });
    const a = store.tx((tx) => allocateIp(tx, { envId: env.id, subnet: env.network.subnet, owner: 'a', requested: '10.42.0.48' }));
    assert.equal(a, '10.42.0.48');
    const again = store.tx((tx) => allocateIp(tx, { envId: env.id, subnet: env.network.subnet, owner: 'a' }));
    assert.equal(again, '10.42.0.48', 'an owner keeps its address');
    const b = store.tx((tx) => allocateIp(tx, { envId: env.id, subnet: env.network.subnet, owner: 'b', requested: '10.42.0.48' }));
    assert.notEqual(b, '10.42.0.48');
    assert.match(b, /^10\.42\.\d+\.\d+$/);
    assert.throws(
      () => store.tx((tx) => allocateIp(tx, { envId: env.id, subnet: env.network.subnet, owner: 'c', requested: '10.42.0.48', strict: true })),
      /already in use/,
    );
    assert.throws(
      () => store.tx((tx) => allocateIp(tx, { envId: env.id, subnet: env.network.subnet, owner: 'c', requested: '10.43.0.1' })),
      /outside the usable range/,
    );
    store.tx((tx) => releaseIp(tx, env.id, 'a'));
    const c = store.tx((tx) => allocateIp(tx, { envId: env.id, subnet: env.network.subnet, owner: 'c', requested: '10.42.0.48', strict: true }));
    assert.equal(c, '10.42.0.48', 'a released address can be requested again');
  } finally {
    store.close();
    cleanup(dir);
  }
});

test('allocation: random start then sequential, fills a small subnet exactly, then reports exhaustion', () => {
  const dir = tempDir();
  const store = Store.openDir(dir);
  try {
    const env = createEnvironment(store, { name: 'small', network: { subnet: '10.9.0.0/28' } });
    const got = new Set<string>();
    for (let i = 0; i < 9; i++) got.add(store.tx((tx) => allocateIp(tx, { envId: env.id, subnet: env.network.subnet, owner: `o${i}` })));
    // /28: 16 addresses, usable .2 … .10 = 9
    assert.deepEqual([...got].sort((x, y) => ipToInt(x) - ipToInt(y)), ['10.9.0.2', '10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6', '10.9.0.7', '10.9.0.8', '10.9.0.9', '10.9.0.10']);
    assert.throws(() => store.tx((tx) => allocateIp(tx, { envId: env.id, subnet: env.network.subnet, owner: 'x' })), /no free address/);
    // Random start: first allocations of fresh environments do not all start at the same address.
    const firsts = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const e = createEnvironment(store, { name: `r${i}` });
      firsts.add(store.tx((tx) => allocateIp(tx, { envId: e.id, subnet: e.network.subnet, owner: 'first' })));
    }
    assert.ok(firsts.size > 1, `random start expected, got ${[...firsts].join(',')}`);
  } finally {
    store.close();
    cleanup(dir);
  }
});

test('allocation: concurrent allocations from 4 threads with their own connections never collide', async () => {
  const dir = tempDir();
  const store = Store.openDir(dir);
  const env = createEnvironment(store, { name: 'conc', network: { subnet: '10.42.0.0/24' } });
  store.close();
  const dbPath = join(dir, 'drover.db');
  const perWorker = 50;
  const results = await Promise.all(
    [0, 1, 2, 3].map(
      (w) =>
        new Promise<string[]>((resolve, reject) => {
          const worker = new Worker(new URL('./ipam-worker.mjs', import.meta.url), {
            workerData: { dbPath, envId: env.id, subnet: env.network.subnet, count: perWorker, prefix: `w${w}` },
          });
          worker.once('message', (m: string[]) => resolve(m));
          worker.once('error', reject);
        }),
    ),
  );
  const all = results.flat();
  assert.equal(all.length, 4 * perWorker);
  assert.equal(new Set(all).size, all.length, 'every address handed out exactly once');
  const check = new Store(dbPath);
  try {
    const n = (check.db.prepare('SELECT COUNT(DISTINCT ip) AS n FROM ip_allocations WHERE env_id = ?').get(env.id) as { n: number }).n;
    assert.equal(n, all.length);
  } finally {
    check.close();
    cleanup(dir);
  }
});
