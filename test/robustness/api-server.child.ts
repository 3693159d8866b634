// A control plane in its own process for the API robustness tests: prints its URL on stdout, stops on
// SIGTERM. Started as `node --import tsx test/robustness/api-server.child.ts <dataDir>`.
import { startServer } from '../../src/server/server.js';
import { silentLogger } from '../../src/common/log.js';

const srv = await startServer({
  dataDir: process.argv[2] as string,
  host: '127.0.0.1',
  port: 0,
  log: silentLogger(),
  adminAccessKey: 'ROBUSTADMINKEY',
  adminSecretKey: 'robust-admin-secret-0123456789',
});
process.stdout.write(`${srv.url}\n`);
process.once('SIGTERM', () => {
  void srv.close().then(() => process.exit(0));
});
