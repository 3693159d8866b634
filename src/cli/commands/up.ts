// `drover up`: a control plane and an agent for this host, as two child processes of this binary
// (`drover server` and `drover agent`) under a small supervisor that restarts a child that crashes.
import type { Command } from 'commander';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { createLogger } from '../../common/log.js';
import { loadConfig, parseHostPort } from '../../config/config.js';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { errorMessage } from '../../common/errors.js';
import { assertCanListen, formatAddress, pickFreePort } from '../../common/listen.js';
import { acquirePidLock, inUseError, lockHolder } from '../../common/pid-lock.js';
import { agentBindTests, hostAgentArgs, withHostAgentOptions, type HostAgentFlags } from '../host-agent.js';
import { DEFAULT_RESTART_POLICY, SupervisedChild } from '../supervisor.js';
import type { ChildMessage } from '../supervised.js';

type UpFlags = HostAgentFlags & { data?: string; listen?: string; config?: string; logLevel?: string };

async function versionAnswers(url: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/v1/version`, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (res.ok) return true;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export function registerUpCommand(program: Command): void {
  const cmd = program
    .command('up')
    .description('run a control plane and an agent for this host, as two supervised processes (embedded defaults)')
    .option('--data <dir>', 'data directory for both (default: config dataDir, ".drover")')
    .option('--listen <host:port>', 'control plane address (default: 127.0.0.1:8080)');
  withHostAgentOptions(cmd)
    .addHelpText(
      'after',
      `
Runs \`drover server\` and \`drover agent\` as child processes and prints "drover is up" once the API
answers and the agent has registered. A child that exits unexpectedly is restarted (backoff from
0.25 s, doubling, at most 8 s); after 5 exits within 60 s drover up gives up and exits 1. SIGTERM or
Ctrl-C stops the agent, then the server (SIGKILL after 10 s each), and exits 0.

Before starting anything it checks that the addresses are free and that the data directory is not in
use by another drover (<data>/up.lock, <data>/server/server.lock hold the PIDs). Writes
<data>/cli.json (mode 0600) with the admin key on first start, so \`drover stack …\` works from the
same directory.

Examples:
  drover up                                        # 127.0.0.1:8080, data in ./.drover
  drover up --data /var/lib/drover --listen 0.0.0.0:8080 --labels zone=a
  drover up --listen 127.0.0.1:18080 --dns-listen 127.0.0.1:10053 --metadata-listen 127.0.0.1:10080 --metrics-listen ''`,
    )
    .action(async (o: UpFlags) => {
      const cfg = loadConfig(o.config ? { file: o.config } : {});
      const level = o.logLevel ?? cfg.log.level;
      const log = createLogger({ level }).child({ component: 'supervisor' });
      const dataDir = o.data ?? cfg.dataDir;
      const agentDir = join(dataDir, 'agent');
      const cliFile = join(dataDir, 'cli.json');
      let at = parseHostPort(o.listen ?? cfg.server.listen, '--listen');

      // Fail fast, before anything is created: the addresses, then the data directory.
      await assertCanListen([{ at, flag: '--listen' }, ...agentBindTests(cfg, o)]);
      if (at.port === 0) at = { host: at.host, port: await pickFreePort(at.host) };
      const upLock = acquirePidLock(join(dataDir, 'up.lock'), 'drover up');
      const serverLock = join(dataDir, 'server', 'server.lock');
      const server0 = lockHolder(serverLock);
      if (server0) {
        upLock.release();
        throw inUseError(join(dataDir, 'server'), server0, serverLock);
      }

      const common = [...(o.config ? ['--config', o.config] : []), ...(o.logLevel ? ['--log-level', o.logLevel] : [])];
      const policy = DEFAULT_RESTART_POLICY;
      let serverUrl: string | undefined;
      let stopping = false;
      let firstServerReady: () => void = () => undefined;
      let firstAgentReady: () => void = () => undefined;
      const serverReady = new Promise<void>((r) => (firstServerReady = r));
      const agentReady = new Promise<void>((r) => (firstAgentReady = r));

      const shutdown = async (code: number, why: string): Promise<void> => {
        if (stopping) return;
        stopping = true;
        log.info({ reason: why }, 'stopping drover');
        // The agent first: its last report still reaches the server.
        const killed = [await agent.stop(), await server.stop()].some(Boolean);
        upLock.release();
        log.info({ killed }, 'drover stopped');
        log.flush();
        process.exit(code !== 0 ? code : killed ? 1 : 0);
      };
      const giveUp = (message: string): void => {
        if (stopping) return;
        process.stderr.write(`drover: ${message}\n`);
        void shutdown(1, 'a child cannot be kept running');
      };

      const onServerMessage = async (msg: ChildMessage): Promise<void> => {
        if (msg.type !== 'server-ready') return;
        if (!(await versionAnswers(msg.url, 10_000))) {
          log.warn({ url: msg.url }, 'the server says it is ready but /v1/version does not answer');
          return;
        }
        if (msg.firstAdminKey) {
          await writeFileAtomic(cliFile, JSON.stringify({ url: msg.url, ...msg.firstAdminKey }, null, 2), 0o600);
        }
        const again = serverUrl !== undefined;
        serverUrl = msg.url;
        log.info({ child: 'server', childPid: server.pid, url: msg.url, start: server.starts }, again ? 'the server is ready again' : 'the server is ready');
        firstServerReady();
      };
      const server: SupervisedChild = new SupervisedChild('server', {
        log,
        policy,
        command: () => Promise.resolve({ args: ['server', '--data', dataDir, '--listen', formatAddress(at), ...common] }),
        onMessage: (msg) => {
          onServerMessage(msg).catch((err: unknown) => giveUp(`cannot write ${cliFile}: ${errorMessage(err)}`));
        },
        onGiveUp: giveUp,
      });
      const agent: SupervisedChild = new SupervisedChild('agent', {
        log,
        policy,
        async command() {
          // A token only until the agent has registered (it keeps its identity in <data>/agent/agent.json);
          // the server child creates it in its own database.
          const token = existsSync(join(agentDir, 'agent.json')) ? undefined : await server.requestToken();
          return {
            args: ['agent', '--data', dataDir, '--server', serverUrl as string, ...hostAgentArgs(o), ...common],
            ...(token ? { env: { DROVER_REGISTRATION_TOKEN: token } } : {}),
          };
        },
        onMessage: (msg) => {
          if (msg.type !== 'agent-ready') return;
          log.info({ child: 'agent', childPid: agent.pid, hostId: msg.hostId, start: agent.starts }, agent.starts > 1 ? 'the agent is ready again' : 'the agent is ready');
          firstAgentReady();
        },
        onGiveUp: giveUp,
      });

      let signals = 0;
      const onSignal = (signal: NodeJS.Signals): void => {
        if (++signals > 1) {
          log.warn({ signal }, 'second signal: killing the children');
          agent.kill();
          server.kill();
          upLock.release();
          process.exit(1);
        }
        void shutdown(0, signal);
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);

      const slow = (what: string) => setTimeout(() => log.warn(`still waiting for the ${what} to be ready`), 30_000).unref();
      let t = slow('server');
      await server.start();
      await serverReady;
      clearTimeout(t);
      t = slow('agent');
      await agent.start();
      await agentReady;
      clearTimeout(t);
      if (stopping) return;
      const url = serverUrl as string;
      process.stdout.write(
        `drover is up: control plane ${url}, agent data ${agentDir}\n` +
          `  API key in ${cliFile}; try: ./bin/drover stack up -f docker-compose.yml --data ${dataDir}\n` +
          `  metrics: ${url}/metrics   API: ${url}/v1   stop with Ctrl-C\n` +
          `  processes: supervisor ${process.pid}, server ${String(server.pid)}, agent ${String(agent.pid)} (restarted when they crash)\n`,
      );
    });
}
