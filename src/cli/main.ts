// drover: one CLI, a subcommand per role.
import { Command } from 'commander';
import { VERSION } from '../common/version.js';
import { registerServerCommand } from './commands/server.js';
import { registerAgentCommand } from './commands/agent.js';
import { registerUpCommand } from './commands/up.js';
import { registerStackCommand } from './commands/stack.js';
import { registerServiceCommand } from './commands/service.js';
import { registerMetadataCommand } from './commands/metadata.js';
import { registerDnsCommand } from './commands/dns.js';
import { registerAccessCommands } from './commands/access.js';
import { registerOpsCommands } from './commands/ops.js';
import { DroverError, StartupError } from '../common/errors.js';
import { commandLogLevel, installLastResort } from '../common/last-resort.js';

const program = new Command();
program
  .name('drover')
  // Options after a subcommand belong to it (`drover exec c sh -c …` passes `-c` to the command).
  .enablePositionalOptions()
  .description('per-host network and service discovery for containers, with a slim control plane')
  .version(VERSION)
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Examples:
  drover up                                   # control plane + agent for this host (two supervised processes)
  drover server --data /var/lib/drover --listen 0.0.0.0:8080
  drover agent http://SERVER:8080/v1/scripts/<token>
  drover stack up -f docker-compose.yml -f rancher-compose.yml -n myapp`,
  );

// Every command gets the last-resort handlers (src/common/last-resort.ts) before it runs.
program.hook('preAction', (_root, action) => {
  const names: string[] = [];
  for (let c: Command | null = action; c && c !== program; c = c.parent) names.unshift(c.name());
  const level = (action.opts() as { logLevel?: unknown }).logLevel;
  installLastResort({ command: names.join(' '), level: typeof level === 'string' ? level : undefined });
});

registerUpCommand(program);
registerServerCommand(program);
registerAgentCommand(program);
registerStackCommand(program);
registerServiceCommand(program);
registerMetadataCommand(program);
registerDnsCommand(program);
registerAccessCommands(program);
registerOpsCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  const debug = commandLogLevel() === 'debug' || commandLogLevel() === 'trace';
  const stack = (e: unknown): string => {
    const cause = e instanceof Error && e.cause instanceof Error ? `\ncaused by: ${e.cause.stack ?? e.cause.message}` : '';
    return e instanceof Error ? `\n${e.stack ?? ''}${cause}` : '';
  };
  if (err instanceof DroverError) {
    // A start that cannot go on (address in use, data directory in use) is 1, like any failure to run.
    process.stderr.write(`drover: ${err.message}\n${debug ? stack(err).slice(1) + '\n' : ''}`);
    process.exit(err instanceof StartupError ? 1 : 2);
  }
  // Anything else is unexpected: one line, the stack at debug level.
  process.stderr.write(`drover: ${err instanceof Error ? err.message : String(err)}${debug ? stack(err) : ' (--log-level debug shows the stack)'}\n`);
  process.exit(1);
});
