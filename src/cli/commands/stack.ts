import type { Command } from 'commander';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { ApiClient } from '../api-client.js';
import { DroverError, ValidationError } from '../../common/errors.js';
import { client, withConn, type ConnFlags } from './conn.js';
import { readAnswersFile } from '../answers.js';
import { nonNegativeInt, positiveInt } from '../format.js';

interface StackUpFlags extends ConnFlags {
  file?: string[];
  name?: string;
  answers?: string;
  upgrade?: boolean;
  forceUpgrade?: boolean;
  pull?: boolean;
  batchSize?: number;
  interval?: number;
  confirmUpgrade?: boolean;
  rollback?: boolean;
  detach?: boolean;
  timeout?: number;
  format?: string;
}

interface ServiceRow {
  id: string;
  name: string;
  state: string;
  scale: number;
  kind: string;
}
interface ContainerRow {
  id: string;
  name: string;
  serviceId: string | null;
  state: string;
  desiredState: string;
  generation?: string;
  launchConfigName?: string;
  transitioningMessage?: string;
  exitCode?: number | null;
  config?: { startOnce?: boolean };
}
interface Outcome {
  id: string;
  name: string;
  change: string;
  detail: string[];
}


/** The compose files of `stack up`, read; a file the server names in an error is shown by its real path. */
function readFiles(o: StackUpFlags): { dcPath: string; rcPath?: string; dockerCompose: string; rancherCompose?: string } {
  const files = o.file ?? ['docker-compose.yml', 'rancher-compose.yml'].filter((f) => existsSync(f));
  const dc = files.filter((f) => !basename(f).includes('rancher-compose'));
  const rc = files.filter((f) => basename(f).includes('rancher-compose'));
  if (dc.length !== 1 || rc.length > 1) {
    throw new ValidationError('InvalidFiles', files.length === 0 ? 'no docker-compose.yml here: give the files with -f' : 'give exactly one docker-compose file and at most one rancher-compose file');
  }
  const read = (f: string) => {
    try {
      return readFileSync(f, 'utf8');
    } catch (err) {
      throw new ValidationError('InvalidFiles', `${f}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  };
  const dcPath = dc[0] as string;
  return { dcPath, dockerCompose: read(dcPath), ...(rc[0] ? { rcPath: rc[0], rancherCompose: read(rc[0]) } : {}) };
}

/** The server names the files docker-compose.yml / rancher-compose.yml: put the user's paths in. */
function withPaths(err: unknown, f: { dcPath: string; rcPath?: string }): unknown {
  if (!(err instanceof DroverError)) return err;
  let msg = err.message;
  if (msg.startsWith('docker-compose.yml')) msg = f.dcPath + msg.slice('docker-compose.yml'.length);
  else if (msg.startsWith('rancher-compose.yml') && f.rcPath) msg = f.rcPath + msg.slice('rancher-compose.yml'.length);
  return msg === err.message ? err : new DroverError(err.status, err.code, msg, err.fieldName);
}

const progress = (line: string) => process.stderr.write(`${line}\n`);

async function stackUp(o: StackUpFlags): Promise<void> {
  if ([o.upgrade || o.forceUpgrade, o.confirmUpgrade, o.rollback].filter(Boolean).length > 1) {
    throw new ValidationError('InvalidArgument', '--upgrade, --confirm-upgrade and --rollback go one at a time');
  }
  if ((o.batchSize !== undefined || o.interval !== undefined) && !o.upgrade && !o.forceUpgrade) {
    throw new ValidationError('InvalidArgument', '--batch-size and --interval go with --upgrade');
  }
  if (o.format !== undefined && o.format !== 'text' && o.format !== 'json') throw new ValidationError('InvalidArgument', `--format is text or json, got "${o.format}"`);
  const api = client(o);
  const name = o.name ?? basename(resolve('.')).toLowerCase().replace(/[^a-z0-9-]/g, '');
  const existing = await findStack(api, name);
  const json = o.format === 'json';
  const out = (text: string, value: unknown) => process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : text);

  if (o.confirmUpgrade || o.rollback) {
    if (!existing) throw new ValidationError('NotFound', `no stack named "${name}" (drover stack ls lists them)`);
    const action = o.confirmUpgrade ? 'finishupgrade' : 'rollback';
    const svcs = (await api.call<{ data: ServiceRow[] }>('GET', `/v1/services?stackId=${existing.id}`)).data.filter((s) => s.state === 'upgraded' || s.state === 'upgrading');
    const done: Outcome[] = [];
    for (const s of svcs) {
      await api.call('POST', `/v1/services/${s.id}?action=${action}`);
      done.push({ id: s.id, name: s.name, change: o.confirmUpgrade ? 'confirmed' : 'rolled back', detail: [] });
    }
    out(done.length ? done.map((d) => `${d.name}: ${d.change}\n`).join('') : `stack ${name}: no upgrade under way\n`, { stack: existing.id, services: done });
    if (!o.detach && done.length) await waitRunning(api, existing.id, done.map((d) => d.id), o.timeout ?? 300);
    return;
  }

  const files = readFiles(o);
  const answers = o.answers ? readAnswersFile(o.answers) : undefined;
  if (!existing) {
    const s = await api
      .call<Stack>('POST', '/v1/stacks', {
        name,
        dockerCompose: files.dockerCompose,
        ...(files.rancherCompose !== undefined ? { rancherCompose: files.rancherCompose } : {}),
        ...(answers ? { answers } : {}),
        ...(o.pull ? { pull: true } : {}),
      })
      .catch((err: unknown) => {
        throw withPaths(err, files);
      });
    const svcs = (await api.call<{ data: ServiceRow[] }>('GET', `/v1/services?stackId=${s.id}`)).data;
    out(`stack ${name} (${s.id}) created: ${svcs.map((x) => `${x.name}×${x.scale}`).join(', ')}\n`, { stack: s.id, services: svcs.map((x) => ({ id: x.id, name: x.name, change: 'created', detail: [] })) });
    if (!o.detach) await waitRunning(api, s.id, svcs.map((x) => x.id), o.timeout ?? 300);
    return;
  }
  const r = await api
    .call<{ services: Outcome[] }>('POST', `/v1/stacks/${existing.id}?action=up`, {
      dockerCompose: files.dockerCompose,
      ...(files.rancherCompose !== undefined ? { rancherCompose: files.rancherCompose } : {}),
      ...(answers ? { answers } : {}),
      upgrade: o.upgrade === true || o.forceUpgrade === true,
      forceUpgrade: o.forceUpgrade === true,
      pull: o.pull === true,
      ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
      ...(o.interval !== undefined ? { intervalMillis: o.interval } : {}),
    })
    .catch((err: unknown) => {
      throw withPaths(err, files);
    });
  const lines = r.services.map((x) => `${x.name}: ${x.change}${x.detail.length ? ` (${x.detail.join('; ')})` : ''}\n`);
  out(`stack ${name} (${existing.id}):\n${lines.map((l) => `  ${l}`).join('')}`, { stack: existing.id, services: r.services });
  const moving = r.services.filter((x) => x.change === 'created' || x.change === 'upgraded' || x.change === 'updated');
  if (!o.detach && moving.length) await waitRunning(api, existing.id, moving.map((x) => x.id), o.timeout ?? 300);
  if (r.services.some((x) => x.change === 'upgraded') && !json) {
    process.stdout.write(`confirm with: drover stack up -n ${name} --confirm-upgrade   (or undo with --rollback)\n`);
  }
}

/**
 * Waits until every container of the services that is to run runs (progress on stderr as it changes);
 * a container's transitioning message (Docker's reason it failed) is shown. Throws at the timeout.
 */
async function waitRunning(api: ApiClient, stackId: string, serviceIds: string[], timeoutS: number): Promise<void> {
  const ids = new Set(serviceIds);
  const names = new Map((await api.call<{ data: ServiceRow[] }>('GET', `/v1/services?stackId=${stackId}`)).data.map((s) => [s.id, s.name] as const));
  const deadline = Date.now() + timeoutS * 1000;
  let last = '';
  for (;;) {
    const cs = (await api.call<{ data: ContainerRow[] }>('GET', `/v1/containers?stackId=${stackId}`)).data.filter(
      (c) => c.serviceId !== null && ids.has(c.serviceId) && c.desiredState === 'running',
    );
    const per = new Map<string, { run: number; all: number; why: string[] }>();
    for (const c of cs) {
      const p = per.get(c.serviceId as string) ?? { run: 0, all: 0, why: [] };
      p.all++;
      // A start_once container (a data sidekick) is done once it has run to a clean exit.
      if (c.state === 'running' || (c.config?.startOnce === true && c.state === 'stopped' && c.exitCode === 0)) p.run++;
      else if (c.transitioningMessage) p.why.push(`${c.name}: ${c.transitioningMessage}`);
      per.set(c.serviceId as string, p);
    }
    const line = [...ids].map((id) => {
      const p = per.get(id) ?? { run: 0, all: 0, why: [] };
      return `${names.get(id) ?? id} ${p.run}/${p.all} running${p.why.length ? ` (${p.why.join('; ')})` : ''}`;
    }).join(', ');
    if (line !== last) progress(line);
    last = line;
    if ([...per.values()].every((p) => p.run === p.all)) return;
    if (Date.now() > deadline) throw new DroverError(504, 'Timeout', `not all containers run after ${timeoutS} s: ${line} (drover ps shows them; -d does not wait)`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

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
      .description('create a stack from docker-compose.yml (+ rancher-compose.yml), or bring an existing one in line with the files')
      .option('-f, --file <file...>', 'compose files; a name containing "rancher-compose" is the rancher-compose file (default: ./docker-compose.yml, ./rancher-compose.yml)')
      .option('-n, --name <name>', 'stack name (default: the current directory name)')
      .option('--answers <file>', 'catalog answers: KEY=VALUE lines (the Rancher CLI\'s answers.txt), or a JSON/YAML map')
      .option('-u, --upgrade', 'upgrade the services whose containers the files define differently (new containers, old ones kept stopped until confirmed)')
      .option('--force-upgrade', 'upgrade every service of the files, changed or not')
      .option('-p, --pull', 'the containers this run creates pull their image first, even when their host has it')
      .option('--batch-size <n>', 'with --upgrade: containers replaced at a time (default: the service\'s upgrade_strategy, else all)', positiveInt('--batch-size'))
      .option('--interval <ms>', 'with --upgrade: milliseconds between batches', nonNegativeInt('--interval'))
      .option('-c, --confirm-upgrade', 'confirm the upgrades under way: remove the old containers')
      .option('-r, --rollback', 'roll the upgrades under way back: the old containers (and sidekicks) run again')
      .option('-d, --detach', 'do not wait for the containers to run')
      .option('--timeout <s>', 'how long to wait for the containers (default 300)', positiveInt('--timeout'))
      .option('--format <format>', 'output: text (default) or json')
      .addHelpText(
        'after',
        `
Examples:
  drover stack up -f docker-compose.yml -f rancher-compose.yml -n cassandra
  drover stack up -n cassandra --upgrade --batch-size 1 --interval 2000
  drover stack up -n cassandra --confirm-upgrade      # or --rollback
  drover stack up -n jenkins --answers answers.txt -d`,
      ),
  ).action(async (o: StackUpFlags) => {
    try {
      await stackUp(o);
    } catch (err) {
      fail(err);
    }
  });

  withConn(
    stack
      .command('export')
      .description('write a stack back as docker-compose.yml and rancher-compose.yml')
      .argument('<name>', 'stack name')
      .option('-o, --output <dir>', 'directory to write the two files into, created if missing (default: print them)'),
  ).action(async (name: string, o: ConnFlags & { output?: string }) => {
    try {
      const api = client(o);
      const s = await findStack(api, name);
      if (!s) throw new ValidationError('NotFound', `no stack named "${name}"`);
      const r = await api.call<{ dockerComposeConfig: string; rancherComposeConfig: string }>('POST', `/v1/stacks/${s.id}?action=exportconfig`);
      if (o.output) {
        mkdirSync(o.output, { recursive: true });
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
