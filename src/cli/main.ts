// drover: one CLI, a subcommand per role.
import { Command } from 'commander';
import { VERSION } from '../common/version.js';
import { registerServerCommand } from './commands/server.js';
import { registerAgentCommand } from './commands/agent.js';
import { registerUpCommand } from './commands/up.js';
import { registerStackCommand } from './commands/stack.js';
import { registerMetadataCommand } from './commands/metadata.js';
import { registerDnsCommand } from './commands/dns.js';
import { DroverError } from '../common/errors.js';

const program = new Command();
program
  .name('drover')
  .description('per-host network and service discovery for containers, with a slim control plane')
  .version(VERSION)
  .showHelpAfterError();

registerUpCommand(program);
registerServerCommand(program);
registerAgentCommand(program);
registerStackCommand(program);
registerMetadataCommand(program);
registerDnsCommand(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof DroverError) {
    process.stderr.write(`drover: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`drover: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
