import type { Command } from 'commander';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { ApiClient } from '../api-client.js';
import { ValidationError } from '../../common/errors.js';
import { client, withConn, type ConnFlags } from './conn.js';
import { readAnswersFile } from '../answers.js';

function fail(err: unknown): never {
  const e = err as { message?: string; status?: number };
  process.stderr.write(`error: ${e.message ?? String(err)}\n`);
  process.exit(e.status === 401 ? 3 : 1);
}

type Stack = { id: string; name: string; state: string; environmentId: string };

async function findStack(api: ApiClient, name: string): Promise<Stack | undefined> {
  const r = await api.call<{ data: Stack[] }>('GET', `/v1/stacks?name=${encodeURIComponent(name)}`);
  return r.data[0];
}

export function registerStackCommand(program: Command): void {
  const stack = program.command('stack').description('stacks: import compose files, export them, list, remove');

  withConn(
    stack
      .command('up')
      .description('create a stack from docker-compose.yml (+ rancher-compose.yml), or add new services to it')
      .option('-f, --file <file...>', 'compose files; a name containing "rancher-compose" is the rancher-compose file (default: ./docker-compose.yml, ./rancher-compose.yml)')
      .option('-n, --name <name>', 'stack name (default: the current directory name)')
      .option('--answers <file>', 'catalog answers: KEY=VALUE lines, or a JSON/YAML map'),
  ).action(async (o: ConnFlags & { file?: string[]; name?: string; answers?: string }) => {
    try {
      const files = o.file ?? ['docker-compose.yml', 'rancher-compose.yml'].filter((f) => existsSync(f));
      const dc = files.filter((f) => !basename(f).includes('rancher-compose'));
      const rc = files.filter((f) => basename(f).includes('rancher-compose'));
      if (dc.length !== 1 || rc.length > 1) {
        throw new ValidationError('InvalidFiles', 'give exactly one docker-compose file and at most one rancher-compose file');
      }
      const name = o.name ?? basename(resolve('.')).toLowerCase().replace(/[^a-z0-9-]/g, '');
      const body = {
        name,
        dockerCompose: readFileSync(dc[0] as string, 'utf8'),
        ...(rc[0] ? { rancherCompose: readFileSync(rc[0], 'utf8') } : {}),
        ...(o.answers ? { answers: readAnswersFile(o.answers) } : {}),
      };
      const api = client(o);
      const existing = await findStack(api, name);
      if (existing) {
        const r = await api.call<{ data: { name: string }[] }>('POST', `/v1/stacks/${existing.id}?action=addservices`, {
          dockerCompose: body.dockerCompose,
          ...(body.rancherCompose ? { rancherCompose: body.rancherCompose } : {}),
          ...(body.answers ? { answers: body.answers } : {}),
        });
        process.stdout.write(`stack ${name} (${existing.id}): ${r.data.length ? `added ${r.data.map((s) => s.name).join(', ')}` : 'up to date'}\n`);
      } else {
        const s = await api.call<Stack>('POST', '/v1/stacks', body);
        const svcs = await api.call<{ data: { name: string; scale: number }[] }>('GET', `/v1/services?stackId=${s.id}`);
        process.stdout.write(`stack ${name} (${s.id}) created: ${svcs.data.map((x) => `${x.name}×${x.scale}`).join(', ')}\n`);
      }
    } catch (err) {
      fail(err);
    }
  });

  withConn(
    stack
      .command('export')
      .description('write a stack back as docker-compose.yml and rancher-compose.yml')
      .argument('<name>', 'stack name')
      .option('-o, --output <dir>', 'directory to write the two files into (default: print them)'),
  ).action(async (name: string, o: ConnFlags & { output?: string }) => {
    try {
      const api = client(o);
      const s = await findStack(api, name);
      if (!s) throw new ValidationError('NotFound', `no stack named "${name}"`);
      const r = await api.call<{ dockerComposeConfig: string; rancherComposeConfig: string }>('POST', `/v1/stacks/${s.id}?action=exportconfig`);
      if (o.output) {
        writeFileSync(join(o.output, 'docker-compose.yml'), r.dockerComposeConfig);
        writeFileSync(join(o.output, 'rancher-compose.yml'), r.rancherComposeConfig);
        process.stdout.write(`wrote ${join(o.output, 'docker-compose.yml')} and ${join(o.output, 'rancher-compose.yml')}\n`);
      } else {
        process.stdout.write(`# docker-compose.yml\n${r.dockerComposeConfig}\n# rancher-compose.yml\n${r.rancherComposeConfig}`);
      }
    } catch (err) {
      fail(err);
    }
  });

  withConn(stack.command('ls').description('list stacks')).action(async (o: ConnFlags) => {
    try {
      const r = await client(o).call<{ data: Stack[] }>('GET', '/v1/stacks');
      for (const s of r.data) process.stdout.write(`${s.id}\t${s.name}\t${s.state}\n`);
    } catch (err) {
      fail(err);
    }
  });

  withConn(stack.command('rm').description('remove a stack and its services').argument('<name>', 'stack name')).action(
    async (name: string, o: ConnFlags) => {
      try {
        const api = client(o);
        const s = await findStack(api, name);
        if (!s) throw new ValidationError('NotFound', `no stack named "${name}"`);
        await api.call('DELETE', `/v1/stacks/${s.id}`);
        process.stdout.write(`removed stack ${name}\n`);
      } catch (err) {
        fail(err);
      }
    },
  );
}
