import type { Command } from 'commander';
import { startServer } from '../../server/server.js';
import { createLogger } from '../../common/log.js';
import { loadConfig, parseHostPort } from '../../config/config.js';
import { join } from 'node:path';
import { onShutdown } from '../shutdown.js';

export function registerServerCommand(program: Command): void {
  program
    .command('server')
    .description('run the control plane (API, embedded SQLite, sync for agents)')
    .option('--data <dir>', 'data directory; the database is <dir>/server/drover.db (default: config dataDir, ".drover")')
    .option('--listen <host:port>', 'address to listen on (default: config server.listen, 127.0.0.1:8080)')
    .option('--advertise-url <url>', 'URL agents use to reach this server, shown in the registration command')
    .option('--config <file>', 'JSON config file merged over config/default.json')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
    .addHelpText(
      'after',
      `
On first start the server creates an admin API key and prints it once. To choose it instead, set
DROVER_ADMIN_ACCESS_KEY and DROVER_ADMIN_SECRET_KEY. Environment: DROVER_DATA_DIR, DROVER_LISTEN,
DROVER_ADVERTISE_URL, DROVER_LOG_LEVEL.`,
    )
    .action(async (o: { data?: string; listen?: string; advertiseUrl?: string; config?: string; logLevel?: string }) => {
      const cfg = loadConfig(o.config ? { file: o.config } : {});
      const log = createLogger({ level: o.logLevel ?? cfg.log.level });
      const { host, port } = parseHostPort(o.listen ?? cfg.server.listen, '--listen');
      const srv = await startServer({
        dataDir: join(o.data ?? cfg.dataDir, 'server'),
        host,
        port,
        log,
        ...((o.advertiseUrl ?? cfg.server.advertiseUrl) ? { advertiseUrl: o.advertiseUrl ?? cfg.server.advertiseUrl } : {}),
        ...(process.env.DROVER_ADMIN_ACCESS_KEY ? { adminAccessKey: process.env.DROVER_ADMIN_ACCESS_KEY } : {}),
        ...(process.env.DROVER_ADMIN_SECRET_KEY ? { adminSecretKey: process.env.DROVER_ADMIN_SECRET_KEY } : {}),
        agentImage: cfg.server.agentImage,
        maxWatchSeconds: cfg.server.maxWatchSeconds,
      });
      if (srv.firstAdminKey && !process.env.DROVER_ADMIN_SECRET_KEY) {
        process.stdout.write(
          `\nFirst admin API key (shown once; only its hash is stored):\n` +
            `  export DROVER_URL=${srv.url} DROVER_ACCESS_KEY=${srv.firstAdminKey.accessKey} DROVER_SECRET_KEY=${srv.firstAdminKey.secretKey}\n\n`,
        );
      }
      onShutdown(log, () => srv.close());
    });
}
