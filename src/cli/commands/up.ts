import type { Command } from 'commander';
import { join } from 'node:path';
import { startServer } from '../../server/server.js';
import { createLogger } from '../../common/log.js';
import { loadConfig, parseHostPort } from '../../config/config.js';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { createRegistrationToken } from '../../server/auth/credentials.js';
import { defaultEnvironment } from '../../server/domain/environments.js';
import { onShutdown } from '../shutdown.js';
import { startHostAgent, withHostAgentOptions, type HostAgentFlags } from '../host-agent.js';
import { existsSync } from 'node:fs';

export function registerUpCommand(program: Command): void {
  const cmd = program
    .command('up')
    .description('run a control plane and an agent for this host in one process (embedded defaults)')
    .option('--data <dir>', 'data directory for both (default: config dataDir, ".drover")')
    .option('--listen <host:port>', 'control plane address (default: 127.0.0.1:8080)');
  withHostAgentOptions(cmd)
    .addHelpText(
      'after',
      '\nWrites <data>/cli.json (mode 0600) with the admin key, so `drover stack …` works from the same directory.',
    )
    .action(async (o: HostAgentFlags & { data?: string; listen?: string; config?: string; logLevel?: string }) => {
      const cfg = loadConfig(o.config ? { file: o.config } : {});
      const log = createLogger({ level: o.logLevel ?? cfg.log.level });
      const dataDir = o.data ?? cfg.dataDir;
      const { host, port } = parseHostPort(o.listen ?? cfg.server.listen, '--listen');
      const srv = await startServer({
        dataDir: join(dataDir, 'server'),
        host,
        port,
        log,
        agentImage: cfg.server.agentImage,
        maxWatchSeconds: cfg.server.maxWatchSeconds,
        ...(process.env.DROVER_ADMIN_ACCESS_KEY ? { adminAccessKey: process.env.DROVER_ADMIN_ACCESS_KEY } : {}),
        ...(process.env.DROVER_ADMIN_SECRET_KEY ? { adminSecretKey: process.env.DROVER_ADMIN_SECRET_KEY } : {}),
      });
      const cliFile = join(dataDir, 'cli.json');
      if (srv.firstAdminKey) {
        await writeFileAtomic(
          cliFile,
          JSON.stringify({ url: srv.url, accessKey: srv.firstAdminKey.accessKey, secretKey: srv.firstAdminKey.secretKey }, null, 2),
          0o600,
        );
      }
      const agentDir = join(dataDir, 'agent');
      const needsToken = !existsSync(join(agentDir, 'agent.json'));
      const token = needsToken ? createRegistrationToken(srv.store, defaultEnvironment(srv.store).id).token : undefined;
      const hostAgent = await startHostAgent(cfg, o, log, { dataDir: agentDir, serverUrl: srv.url, registrationToken: token });
      process.stdout.write(
        `drover is up: control plane ${srv.url}, agent data ${agentDir}\n` +
          `  API key in ${cliFile}; try: ./bin/drover stack up -f docker-compose.yml --data ${dataDir}\n` +
          `  metrics: ${srv.url}/metrics   API: ${srv.url}/v1   stop with Ctrl-C\n`,
      );
      onShutdown(log, () => hostAgent.stop(), () => srv.close());
    });
}
