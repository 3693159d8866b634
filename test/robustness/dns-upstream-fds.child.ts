// Child of dns-upstream-fds.test.ts: a DNS server run under a low open-files limit (prlimit).
// argv: <silent upstream port> <live upstream port>. Client 127.0.0.61 recurses to the silent one,
// 127.0.0.62 to the live one; `local.rancher.internal` is answered locally.
import { readdirSync } from 'node:fs';
import { createLogger } from '../../src/common/log.js';
import { parseAnswers } from '../../src/dns/answers.js';
import { DnsServer } from '../../src/dns/server.js';
import { buildDnsDataFromAnswers } from '../../src/dns/view.js';

const [silent, live] = process.argv.slice(2);
const log = createLogger({ level: 'info' });
const file = parseAnswers(
  JSON.stringify({
    '127.0.0.61': { recurse: [`127.0.0.1:${silent}`] },
    '127.0.0.62': { recurse: [`127.0.0.1:${live}`] },
    default: {
      authoritative: ['rancher.internal'],
      a: { 'local.rancher.internal.': { answer: ['10.0.0.7'] } },
    },
  }),
);
const server = new DnsServer({ data: buildDnsDataFromAnswers(file), log, recurserTimeoutMs: 1000, udpTransport: 'dgram' });
const { port } = await server.listen('127.0.0.1', 0);
log.info({ port, fds: readdirSync('/proc/self/fd').length }, 'child ready');
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
