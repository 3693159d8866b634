// Child of metadata-hostile.test.ts: a metadata server on the fixture answers, with small limits so the
// test reaches them quickly. Run with --expose-gc. IPC: {type:'stats'} → {rss, heap, waiting}.
import { silentLogger } from '../../src/common/log.js';
import { MetadataServer } from '../../src/metadata/server.js';
import { buildMetadataAnswers } from '../../src/metadata/tree.js';
import { fixtureState, HOST_A } from '../fixtures/metadata/state.js';

const server = new MetadataServer({
  log: silentLogger(),
  answers: buildMetadataAnswers(fixtureState(), { hostId: HOST_A, tokenKey: 'robustness-token-key-0123456789abcdef' }),
  maxWaiters: 80,
  maxWaitersPerClient: 50,
  maxConnectionsPerClient: 200,
  headersTimeoutMs: 1_500,
});
const { port } = await server.listen('127.0.0.1', 0);
const gc = (globalThis as { gc?: () => void }).gc;
process.on('message', (m: { type: string }) => {
  if (m.type === 'stats') {
    gc?.();
    const mem = process.memoryUsage();
    process.send?.({ type: 'stats', rss: mem.rss, heap: mem.heapUsed, waiting: server.waiting });
  }
});
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
process.send?.({ type: 'ready', port });
