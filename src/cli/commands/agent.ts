import type { Command } from 'commander';
import { join } from 'node:path';
import { createLogger } from '../../common/log.js';
import { loadConfig } from '../../config/config.js';
import { ValidationError } from '../../common/errors.js';
import { onShutdown } from '../shutdown.js';
import { startHostAgent, withHostAgentOptions, type HostAgentFlags } from '../host-agent.js';

/** Splits the original's registration URL (`http://server/v1/scripts/<token>`) into server and token. */
export function parseRegistrationUrl(url: string): { serverUrl: string; token: string } {
  const m = /^(https?:\/\/.+?)\/v1\/scripts\/([^/?#]+)$/.exec(url);
  if (!m) throw new ValidationError('InvalidRegistrationUrl', `"${url}" is not a registration URL (http://SERVER/v1/scripts/TOKEN)`);
  return { serverUrl: m[1] as string, token: decodeURIComponent(m[2] as string) };
}

export function registerAgentCommand(program: Command): void {
  const cmd = program
    .command('agent')
    .description("run this host's agent: register, sync the environment, serve and apply it")
    .argument('[registration-url]', 'the URL from the registration command: http://SERVER/v1/scripts/TOKEN')
    .option('--server <url>', 'control plane URL (default: config agent.serverUrl, or from the registration URL)')
    .option('--token <token>', 'registration token (only needed until the agent has registered once)')
    .option('--data <dir>', 'data directory; identity and state go to <dir>/agent/ (default: config dataDir)')
    .option('--hostname <name>', 'host name to register (default: the OS host name)');
  withHostAgentOptions(cmd)
    .addHelpText('after', '\nEnvironment: DROVER_SERVER_URL, DROVER_REGISTRATION_TOKEN, DROVER_AGENT_IP, DROVER_HOSTNAME, DROVER_DATA_DIR, DOCKER_HOST.')
    .action(
      async (
        regUrl: string | undefined,
        o: HostAgentFlags & { server?: string; token?: string; data?: string; config?: string; logLevel?: string },
      ) => {
        const cfg = loadConfig(o.config ? { file: o.config } : {});
        const log = createLogger({ level: o.logLevel ?? cfg.log.level });
        const fromUrl = regUrl ? parseRegistrationUrl(regUrl) : undefined;
        const token = o.token ?? fromUrl?.token ?? process.env.DROVER_REGISTRATION_TOKEN;
        const hostAgent = await startHostAgent(cfg, o, log, {
          dataDir: join(o.data ?? cfg.dataDir, 'agent'),
          serverUrl: o.server ?? fromUrl?.serverUrl ?? cfg.agent.serverUrl,
          registrationToken: token,
        });
        onShutdown(log, () => hostAgent.stop());
      },
    );
}
