// A port that is free for both TCP and UDP on an address (DNS needs both; other processes may hold many
// TCP ports). Used by tests and benchmarks alike.
import dgram from 'node:dgram';
import net from 'node:net';

export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (;;) {
    const t = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      t.once('error', reject);
      t.listen(0, host, () => resolve((t.address() as net.AddressInfo).port));
    });
    const u = dgram.createSocket('udp4');
    const ok = await new Promise<boolean>((r) => {
      u.once('error', () => r(false));
      u.bind(port, host, () => r(true));
    });
    if (ok) await new Promise<void>((r) => u.close(() => r()));
    await new Promise<void>((r) => t.close(() => r()));
    if (ok) return port;
  }
}
