import type { Command } from 'commander';
import { join } from 'node:path';
import { createLogger } from '../../common/log.js';
import { loadConfig } from '../../config/config.js';
import { ValidationError } from '../../common/errors.js';
import { onShutdown } from '../shutdown.js';
import { agentBindTests, startHostAgent, withHostAgentOptions, type HostAgentFlags } from '../host-agent.js';
import { assertCanListen } from '../../common/listen.js';
import { supervisorChannel } from '../supervised.js';

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
    .addHelpText(
      'after',
      `
Environment: DROVER_SERVER_URL, DROVER_REGISTRATION_TOKEN, DROVER_AGENT_IP, DROVER_HOSTNAME, DROVER_DATA_DIR, DOCKER_HOST.

Examples:
  drover agent http://10.0.0.5:8080/v1/scripts/<token> --labels hostname=node1,zone=a
  drover agent --server http://10.0.0.5:8080 --data /var/lib/drover     # registered before: no token needed`,
    )
    .action(
      async (
        regUrl: string | undefined,
        o: HostAgentFlags & { server?: string; token?: string; data?: string; config?: string; logLevel?: string },
      ) => {
        const cfg = loadConfig(o.config ? { file: o.config } : {});
        const log = createLogger({ level: o.logLevel ?? cfg.log.level });
        const fromUrl = regUrl ? parseRegistrationUrl(regUrl) : undefined;
        const token = o.token ?? fromUrl?.token ?? process.env.DROVER_REGISTRATION_TOKEN;
        // Metrics fail at start anyway; DNS and metadata would only fail on their first apply.
        await assertCanListen(agentBindTests(cfg, o));
        const hostAgent = await startHostAgent(cfg, o, log, {
          dataDir: join(o.data ?? cfg.dataDir, 'agent'),
          serverUrl: o.server ?? fromUrl?.serverUrl ?? cfg.agent.serverUrl,
          registrationToken: token,
        });
        const supervisor = supervisorChannel();
        let readyTimer: NodeJS.Timeout | undefined;
        if (supervisor) {
          // Ready for `drover up` once registered (at once with an identity from an earlier start).
          const poll = (): void => {
            const hostId = hostAgent.agent.hostId();
            if (hostId) supervisor.send({ type: 'agent-ready', hostId });
            else readyTimer = setTimeout(poll, 100);
          };
          poll();
        }
        onShutdown(
          log,
          () => {
            clearTimeout(readyTimer);
            return Promise.resolve();
          },
          () => hostAgent.stop(),
        );
      },
    );
}
