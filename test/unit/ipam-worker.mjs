// Worker for the concurrent IPAM test: its own SQLite connection, allocating as fast as it can.
import { workerData, parentPort } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { Store } = await import('../../src/server/db/store.ts');
const { allocateIp } = await import('../../src/server/ipam/allocate.ts');
const store = new Store(workerData.dbPath);
const got = [];
for (let i = 0; i < workerData.count; i++) {
  got.push(store.tx((tx) => allocateIp(tx, { envId: workerData.envId, subnet: workerData.subnet, owner: `${workerData.prefix}-${i}` })));
}
store.close();
parentPort.postMessage(got);
