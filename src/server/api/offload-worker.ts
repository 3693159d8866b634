// The worker thread of src/server/api/offload.ts: its own connection to the store, one job at a time,
// each answered with its result (or error) and the commits it made, which the main thread announces.
import { parentPort, workerData } from 'node:worker_threads';
import { Store, type CommitEvent } from '../db/store.js';
import { execute, toWireError, type Job, type WorkerReply } from './offload-jobs.js';

const port = parentPort;
if (!port) throw new Error('offload-worker runs as a worker thread');
const store = new Store((workerData as { dbPath: string }).dbPath);
let events: CommitEvent[] = [];
store.on('commit', (e) => events.push(e));

port.on('message', (m: { id: number; job: Job }) => {
  events = [];
  let reply: WorkerReply;
  try {
    reply = { id: m.id, ok: true, result: execute(store, m.job), events };
  } catch (err) {
    reply = { id: m.id, ok: false, error: toWireError(err), events };
  }
  port.postMessage(reply);
});
