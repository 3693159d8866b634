import type { Command } from 'commander';
import { join } from 'node:path';
import { createLogger } from '../../common/log.js';
import { loadConfig } from '../../config/config.js';
import { ValidationError } from '../../common/errors.js';
import { onShutdown } from '../shutdown.js';
import { startHostAgent } from '../host-agent.js';

/** Splits the original's registration URL (`http://server/v1/scripts/<token>`) into server and token. */
export function parseRegistrationUrl(url: string): { serverUrl: string; token: string } {
  const m = /^(https?:\/\/.+?)\/v1\/scripts\/([^/?#]+)$/.exec(url);
  if (!m) throw new ValidationError('InvalidRegistrationUrl', `"${url}" is not a registration URL (http://SERVER/v1/scripts/TOKEN)`);
  return { serverUrl: m[1] as string, token: decodeURIComponent(m[2] as string) };
}

export function registerAgentCommand(program: Command): void {
  program
    .command('agent')
    .description("run this host's agent: register, sync the environment, serve and apply it")
    .argument('[registration-url]', 'the URL from the registration command: http://SERVER/v1/scripts/TOKEN')
    .option('--server <url>', 'control plane URL (default: config agent.serverUrl, or from the registration URL)')
    .option('--token <token>', 'registration token (only needed until the agent has registered once)')
    .option('--data <dir>', 'data directory; identity and state go to <dir>/agent/ (default: config dataDir)')
    .option('--agent-ip <ip>', "this host's address as other hosts reach it (default: first non-loopback IPv4)")
    .option('--hostname <name>', 'host name to register (default: the OS host name)')
    .option('--labels <k=v,...>', 'host labels for scheduling, e.g. hostname=cassandra1,zone=a')
    .option('--docker-socket <path>', 'Docker socket the agent runs containers through (default: DOCKER_HOST=unix://…, else /var/run/docker.sock if it exists, else no container runtime)')
    .option('--metadata-listen <host:port>', "rancher-metadata address, '' for none (default: config agent.metadataListen, 169.254.169.250:80)")
    .option('--dns-listen <host:port>', "DNS address (UDP and TCP), '' for none (default: config agent.dnsListen, 169.254.169.250:53)")
    .option('--metrics-listen <host:port>', "the agent's Prometheus /metrics address, '' for none (default: 127.0.0.1:9109)")
    .option('--config <file>', 'JSON config file merged over config/default.json')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
    .addHelpText('after', '\nEnvironment: DROVER_SERVER_URL, DROVER_REGISTRATION_TOKEN, DROVER_AGENT_IP, DROVER_HOSTNAME, DROVER_DATA_DIR, DOCKER_HOST.')
    .action(
      async (
        regUrl: string | undefined,
        o: { server?: string; token?: string; data?: string; agentIp?: string; hostname?: string; labels?: string; config?: string; logLevel?: string; dockerSocket?: string; metadataListen?: string; dnsListen?: string; metricsListen?: string },
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
