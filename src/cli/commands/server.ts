import type { Command } from 'commander';
import { startServer } from '../../server/server.js';
import { createLogger } from '../../common/log.js';
import { loadConfig, parseHostPort } from '../../config/config.js';
import { countUnexpectedErrorsIn } from '../../common/last-resort.js';
import { rethrowListenError } from '../../common/listen.js';
import { errorMessage } from '../../common/errors.js';
import { createRegistrationToken } from '../../server/auth/credentials.js';
import { defaultEnvironment } from '../../server/domain/environments.js';
import { join } from 'node:path';
import { onShutdown } from '../shutdown.js';
import { supervisorChannel } from '../supervised.js';

export function registerServerCommand(program: Command): void {
  program
    .command('server')
    .description('run the control plane (API, embedded SQLite, sync for agents)')
    .option('--data <dir>', 'data directory; the database is <dir>/server/drover.db (default: config dataDir, ".drover")')
    .option('--listen <host:port>', 'address to listen on (default: config server.listen, 127.0.0.1:8080)')
    .option('--advertise-url <url>', 'URL agents use to reach this server, shown in the registration command')
    .option('--ui-dir <dir>', "the web UI's built files (default: dist/ui of this installation); '' for no UI")
    .option('--config <file>', 'JSON config file merged over config/default.json')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
    .addHelpText(
      'after',
      `
The server listens first; only then does it open <dir>/server (locked with server.lock, the PID of
the process using it) and, on first start, create an admin API key and print it once. To choose it
instead, set DROVER_ADMIN_ACCESS_KEY and DROVER_ADMIN_SECRET_KEY. Environment: DROVER_DATA_DIR,
DROVER_LISTEN, DROVER_ADVERTISE_URL, DROVER_UI_DIR, DROVER_LOG_LEVEL.

Examples:
  drover server --data /var/lib/drover --listen 0.0.0.0:8080
  drover server --listen 10.0.0.5:8080 --advertise-url http://drover.example:8080`,
    )
    .action(async (o: { data?: string; listen?: string; advertiseUrl?: string; uiDir?: string; config?: string; logLevel?: string }) => {
      const cfg = loadConfig(o.config ? { file: o.config } : {});
      const log = createLogger({ level: o.logLevel ?? cfg.log.level });
      const at = parseHostPort(o.listen ?? cfg.server.listen, '--listen');
      const srv = await startServer({
        dataDir: join(o.data ?? cfg.dataDir, 'server'),
        host: at.host,
        port: at.port,
        log,
        lock: true,
        ...((o.advertiseUrl ?? cfg.server.advertiseUrl) ? { advertiseUrl: o.advertiseUrl ?? cfg.server.advertiseUrl } : {}),
        ...(process.env.DROVER_ADMIN_ACCESS_KEY ? { adminAccessKey: process.env.DROVER_ADMIN_ACCESS_KEY } : {}),
        ...(process.env.DROVER_ADMIN_SECRET_KEY ? { adminSecretKey: process.env.DROVER_ADMIN_SECRET_KEY } : {}),
        ...(() => {
          const ui = o.uiDir ?? process.env.DROVER_UI_DIR;
          return ui === undefined ? {} : { uiDir: ui === '' ? null : ui };
        })(),
        agentImage: cfg.server.agentImage,
        maxWatchSeconds: cfg.server.maxWatchSeconds,
      }).catch((err: unknown) => rethrowListenError(err, at, '--listen'));
      countUnexpectedErrorsIn(srv.registry);
      const supervisor = supervisorChannel();
      if (supervisor) {
        // Under `drover up`: the supervisor writes the key to <data>/cli.json and asks for the agent's token.
        supervisor.onMessage((msg) => {
          try {
            const token = createRegistrationToken(srv.store, defaultEnvironment(srv.store).id).token;
            supervisor.send({ type: 'registration-token', id: msg.id, token });
          } catch (err) {
            supervisor.send({ type: 'registration-token-error', id: msg.id, message: errorMessage(err) });
          }
        });
        supervisor.send({
          type: 'server-ready',
          url: srv.url,
          ...(srv.firstAdminKey ? { firstAdminKey: { accessKey: srv.firstAdminKey.accessKey, secretKey: srv.firstAdminKey.secretKey } } : {}),
        });
      } else if (srv.firstAdminKey && !process.env.DROVER_ADMIN_SECRET_KEY) {
        process.stdout.write(
          `\nFirst admin API key (shown once; only its hash is stored):\n` +
            `  export DROVER_URL=${srv.url} DROVER_ACCESS_KEY=${srv.firstAdminKey.accessKey} DROVER_SECRET_KEY=${srv.firstAdminKey.secretKey}\n\n`,
        );
      }
      onShutdown(log, () => srv.close());
    });
}
