// Child process of bench/dns.ts: our DNS server over the bench environment.
// Usage: node --import tsx bench/dns-server.ts <port> <upstream ip:port>
import { DnsServer } from '../src/dns/server.js';
import { buildDnsData } from '../src/dns/view.js';
import { benchEnv } from './dns-fixture.js';

const port = Number(process.argv[2] ?? 0);
const upstream = process.argv[3] ?? '';
const t0 = performance.now();
const { state } = benchEnv();
const t1 = performance.now();
const data = buildDnsData(state);
const t2 = performance.now();
const server = new DnsServer({ data, hostResolvers: upstream ? [upstream] : [] });
const addr = await server.listen('127.0.0.1', port);
const mem = process.memoryUsage();
console.log(
  JSON.stringify({
    ready: true,
    port: addr.port,
    udp: server.udpTransport,
    stateMs: Math.round(t1 - t0),
    renderMs: Math.round(t2 - t1),
    heapMb: Math.round(mem.heapUsed / 1048576),
    rssMb: Math.round(mem.rss / 1048576),
  }),
);
const stop = (): void => {
  void server.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
