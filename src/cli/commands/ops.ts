// The day-to-day commands, in rancher-compose's words: drover ps, scale, start, stop, restart, rm, and
// drover host ls / label / add. All of them are API calls (src/server/api/routes.ts) with the admin key.
import type { Command } from 'commander';
import type { ApiClient } from '../api-client.js';
import { DroverError, ValidationError } from '../../common/errors.js';
import { labelList, naturalCompare, nonNegativeInt, parseFormat, positiveInt, printJson, table } from '../format.js';
import { client, withConn, type ConnFlags } from './conn.js';

interface StackRow {
  id: string;
  name: string;
}
interface ServiceRow {
  id: string;
  name: string;
  stackId: string;
  state: string;
  scale: number;
  kind: string;
  healthState?: string | null;
}
interface ContainerRow {
  id: string;
  name: string;
  state: string;
  desiredState: string;
  hostId: string | null;
  primaryIpAddress: string | null;
  serviceId: string | null;
  stackId: string | null;
  healthState?: string | null;
  generation?: string;
  startCount?: number;
  transitioningMessage?: string;
}
interface HostRow {
  id: string;
  name: string;
  hostname: string;
  agentIpAddress: string;
  state: string;
  labels: Record<string, string>;
}
type Listing<T> = { data: T[] };

interface FormatFlags extends ConnFlags {
  format?: string;
}
interface TargetFlags extends ConnFlags {
  stack?: string;
}

const q = encodeURIComponent;
const progress = (line: string) => process.stderr.write(`${line}\n`);
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

// ---- errors --------------------------------------------------------------------------------------

/** `error: <message>` on stderr; exit 3 when the API refused the key (401), else 1. */
function fail(err: unknown): never {
  const status = err instanceof DroverError ? err.status : undefined;
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(status === 401 ? 3 : 1);
}

/** An API refusal (4xx) about `label`, with the label (and the field the API names) in front. */
function about(label: string, err: unknown): unknown {
  if (!(err instanceof DroverError) || err.status < 400 || err.status >= 500 || err.status === 401) return err;
  if (err.message.startsWith(label)) return err;
  const field = err.fieldName && !err.message.startsWith(err.fieldName) ? `${err.fieldName}: ` : '';
  return new DroverError(err.status, err.code, `${label}: ${field}${err.message}`, err.fieldName);
}

async function labelled<T>(label: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw about(label, err);
  }
}

const notFound = (message: string) => new ValidationError('NotFound', message);

// ---- resolution ----------------------------------------------------------------------------------

async function findStack(api: ApiClient, name: string): Promise<StackRow> {
  const st = (await api.call<Listing<StackRow>>('GET', `/v1/stacks?name=${q(name)}`)).data[0];
  if (!st) throw notFound(`no stack "${name}" (drover stack ls lists them)`);
  return st;
}

async function findServiceIn(api: ApiClient, stack: StackRow, name: string): Promise<ServiceRow | undefined> {
  return (await api.call<Listing<ServiceRow>>('GET', `/v1/services?stackId=${q(stack.id)}&name=${q(name)}`)).data[0];
}

async function noService(api: ApiClient, stack: StackRow, name: string): Promise<ValidationError> {
  const known = (await api.call<Listing<ServiceRow>>('GET', `/v1/services?stackId=${q(stack.id)}`)).data.map((s) => s.name).sort(naturalCompare);
  return notFound(`no service "${name}" in stack "${stack.name}" (its services: ${known.join(', ') || 'none'}; drover ps ${stack.name} lists its containers)`);
}

/** `stack/service`, or `service` with --stack: the two names, or undefined when it is neither. */
function serviceNames(ref: string, stackFlag: string | undefined): { stack: string; service: string } | undefined {
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(ref);
  if (m) return { stack: m[1] as string, service: m[2] as string };
  if (ref.includes('/')) throw new ValidationError('InvalidArgument', `"${ref}" is not <stack>/<service> (for example: shop/web)`);
  return stackFlag !== undefined && ref ? { stack: stackFlag, service: ref } : undefined;
}

interface ServiceTarget {
  kind: 'service';
  label: string;
  stack: StackRow;
  service: ServiceRow;
}
interface ContainerTarget {
  kind: 'container';
  label: string;
  container: ContainerRow;
}
type Target = ServiceTarget | ContainerTarget;

/** A service given as `stack/service` (or a bare name with --stack). */
async function resolveService(api: ApiClient, ref: string, stackFlag: string | undefined, example: string): Promise<ServiceTarget> {
  const names = serviceNames(ref, stackFlag);
  if (!names) throw new ValidationError('InvalidArgument', `name the stack too, as <stack>/<service> or with --stack (for example: ${example})`);
  const stack = await findStack(api, names.stack);
  const service = await findServiceIn(api, stack, names.service);
  if (!service) throw await noService(api, stack, names.service);
  return { kind: 'service', label: `${stack.name}/${service.name}`, stack, service };
}

async function containerById(api: ApiClient, id: string): Promise<ContainerRow | undefined> {
  try {
    return await api.call<ContainerRow>('GET', `/v1/containers/${q(id)}`);
  } catch (err) {
    if (err instanceof DroverError && err.status === 404) return undefined;
    throw err;
  }
}

/**
 * TARGET of start/stop/restart/rm: `stack/service` is the service; otherwise a container id or name
 * (`stack-service-1`). With --stack, a bare name is first a service of that stack.
 */
async function resolveTarget(api: ApiClient, ref: string, stackFlag: string | undefined): Promise<Target> {
  if (ref.includes('/')) return resolveService(api, ref, undefined, 'shop/web');
  if (stackFlag !== undefined) {
    const stack = await findStack(api, stackFlag);
    const service = await findServiceIn(api, stack, ref);
    if (service) return { kind: 'service', label: `${stack.name}/${service.name}`, stack, service };
  }
  const byId = await containerById(api, ref);
  if (byId) return { kind: 'container', label: byId.name || byId.id, container: byId };
  const byName = (await api.call<Listing<ContainerRow>>('GET', `/v1/containers?name=${q(ref)}`)).data;
  if (byName.length > 1) {
    throw new ValidationError('Ambiguous', `"${ref}" names ${byName.length} containers (ids: ${byName.map((c) => c.id).join(', ')}): give the id`);
  }
  const c = byName[0];
  if (!c) {
    const where = stackFlag !== undefined ? `no service "${ref}" in stack "${stackFlag}" and no container` : 'no container';
    throw notFound(`${where} "${ref}" (drover ps lists containers; a service is <stack>/<service>)`);
  }
  return { kind: 'container', label: c.name, container: c };
}

/** HOST: an id, else a name, else a hostname. */
async function resolveHost(api: ApiClient, ref: string): Promise<HostRow> {
  const hosts = (await api.call<Listing<HostRow>>('GET', '/v1/hosts')).data;
  const byId = hosts.find((h) => h.id === ref);
  if (byId) return byId;
  for (const key of ['name', 'hostname'] as const) {
    const m = hosts.filter((h) => h[key] === ref);
    if (m.length > 1) throw new ValidationError('Ambiguous', `${m.length} hosts are named "${ref}" (ids: ${m.map((h) => h.id).join(', ')}): give the id`);
    if (m[0]) return m[0];
  }
  throw notFound(`no host "${ref}" (drover host ls lists them)`);
}

// ---- waiting -------------------------------------------------------------------------------------

/**
 * Polls until every container `list` returns reports `stopped` (a container whose record is gone counts
 * as stopped), with progress on stderr as it changes. Returns the ones still not stopped at the timeout.
 */
async function waitStopped(label: string, list: () => Promise<ContainerRow[]>, timeoutS: number): Promise<ContainerRow[]> {
  const deadline = Date.now() + timeoutS * 1000;
  let last = '';
  for (;;) {
    const pending = (await list()).filter((c) => c.state !== 'stopped');
    if (pending.length === 0) return [];
    const line = `${label}: waiting for ${plural(pending.length, 'container')} to stop: ${pending.map((c) => `${c.name} ${c.state}`).join(', ')}`;
    if (line !== last) progress(line);
    last = line;
    if (Date.now() >= deadline) return pending;
    await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))));
  }
}

async function serviceContainers(api: ApiClient, s: ServiceRow): Promise<ContainerRow[]> {
  return (await api.call<Listing<ContainerRow>>('GET', `/v1/containers?serviceId=${q(s.id)}`)).data.filter((c) => c.generation !== 'previous');
}

// ---- actions -------------------------------------------------------------------------------------

type Verb = 'start' | 'stop' | 'restart' | 'rm';

interface RestartFlags {
  timeout?: number;
  batchSize?: number;
  interval?: number;
}

/** A service's rolling restart (POST ?action=restart), followed until it is done (progress on stderr). */
async function restartService(api: ApiClient, t: Extract<Target, { kind: 'service' }>, o: RestartFlags): Promise<string> {
  const path = `/v1/services/${q(t.service.id)}`;
  const strategy = { ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}), ...(o.interval !== undefined ? { intervalMillis: o.interval } : {}) };
  await api.call('POST', `${path}?action=restart`, { rollingRestartStrategy: strategy });
  const timeoutS = o.timeout ?? 60;
  const deadline = Date.now() + timeoutS * 1000;
  let last = '';
  for (;;) {
    const s = await api.call<ServiceRow & { restart?: { batch: number[]; remaining: number[]; phase: string } }>('GET', path);
    if (!s.restart) break;
    const line = `${t.label}: ${s.restart.phase === 'stop' ? 'stopping' : 'starting'} slot${s.restart.batch.length > 1 ? 's' : ''} ${s.restart.batch.join(', ')}${s.restart.remaining.length ? ` (${s.restart.remaining.length} to go)` : ''}`;
    if (line !== last) process.stderr.write(`${line}\n`);
    last = line;
    if (Date.now() > deadline) {
      throw new DroverError(504, 'Timeout', `${t.label}: the restart is not done after ${timeoutS} s (it goes on: ${last.slice(t.label.length + 2)}). Are the agents of its hosts up? (drover host ls, drover ps ${t.stack.name})`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return `${t.label}: restarted (${plural((await serviceContainers(api, t.service)).length, 'container')})`;
}

async function act(api: ApiClient, t: Target, verb: Verb, o: RestartFlags): Promise<string> {
  const timeoutS = o.timeout ?? 60;
  if (t.kind === 'service') {
    const path = `/v1/services/${q(t.service.id)}`;
    switch (verb) {
      case 'start':
        await api.call('POST', `${path}?action=activate`);
        return `${t.label}: started (service active)`;
      case 'stop':
        await api.call('POST', `${path}?action=deactivate`);
        return `${t.label}: stopped (service inactive, its containers stop)`;
      case 'restart':
        return restartService(api, t, o);
      case 'rm': {
        const n = (await serviceContainers(api, t.service)).length;
        await api.call('DELETE', path);
        return `${t.label}: removed (service ${t.service.id} and ${plural(n, 'container')})`;
      }
    }
  }
  const c = t.container;
  const path = `/v1/containers/${q(c.id)}`;
  switch (verb) {
    case 'start':
      await api.call('POST', `${path}?action=start`);
      return `${t.label}: starting`;
    case 'stop':
      await api.call('POST', `${path}?action=stop`);
      return `${t.label}: stopping`;
    case 'restart': {
      await api.call('POST', `${path}?action=stop`);
      const pending = await waitStopped(t.label, async () => {
        const now = await containerById(api, c.id);
        return now ? [now] : [];
      }, timeoutS);
      await api.call('POST', `${path}?action=start`);
      if (pending.length) {
        throw new DroverError(
          504,
          'Timeout',
          `${t.label}: not restarted: after ${timeoutS} s it is ${pending[0]?.state ?? 'gone'}, not stopped; it was asked to start again. Is the agent of its host up? (drover host ls)`,
        );
      }
      return `${t.label}: restarted`;
    }
    case 'rm':
      await api.call('DELETE', path);
      return `${t.label}: removed (container ${c.id})`;
  }
}

// ---- argument parsing ----------------------------------------------------------------------------


/** `SVC=N` → the service reference and the scale. */
export function parseScaleArg(arg: string): { ref: string; scale: number } {
  const i = arg.lastIndexOf('=');
  if (i <= 0) throw new ValidationError('InvalidArgument', `${arg}: give SERVICE=N (for example: shop/web=3)`);
  const ref = arg.slice(0, i);
  const n = arg.slice(i + 1);
  if (!/^\d+$/.test(n) || !Number.isSafeInteger(Number(n))) throw new ValidationError('InvalidArgument', `${arg}: scale must be an integer ≥ 0`);
  return { ref, scale: Number(n) };
}

/** `k=v` sets label k, `k-` removes it (kubectl's words); applied in order over `labels`. */
export function applyLabelArgs(labels: Record<string, string>, args: string[]): { labels: Record<string, string>; missing: string[] } {
  const out = { ...labels };
  const missing: string[] = [];
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq > 0) {
      out[a.slice(0, eq)] = a.slice(eq + 1);
    } else if (eq < 0 && a.length > 1 && a.endsWith('-')) {
      const k = a.slice(0, -1);
      if (k in out) delete out[k];
      else missing.push(k);
    } else {
      throw new ValidationError('InvalidArgument', `${a}: give key=value to set a label or key- to remove one (for example: zone=a or zone-)`);
    }
  }
  return { labels: out, missing };
}

// ---- commands ------------------------------------------------------------------------------------

async function ps(stackName: string | undefined, o: FormatFlags): Promise<void> {
  const format = parseFormat(o.format);
  const api = client(o);
  const stack = stackName !== undefined ? await findStack(api, stackName) : undefined;
  const [containers, hosts, services, stacks] = await Promise.all([
    api.call<Listing<ContainerRow>>('GET', `/v1/containers${stack ? `?stackId=${q(stack.id)}` : ''}`),
    api.call<Listing<HostRow>>('GET', '/v1/hosts'),
    api.call<Listing<ServiceRow>>('GET', `/v1/services${stack ? `?stackId=${q(stack.id)}` : ''}`),
    api.call<Listing<StackRow>>('GET', '/v1/stacks'),
  ]);
  const hostName = new Map(hosts.data.map((h) => [h.id, h.name] as const));
  const stackName_ = new Map(stacks.data.map((s) => [s.id, s.name] as const));
  const serviceName = new Map(services.data.map((s) => [s.id, `${stackName_.get(s.stackId) ?? s.stackId}/${s.name}`] as const));
  const svcOf = (c: ContainerRow) => (c.serviceId ? (serviceName.get(c.serviceId) ?? c.serviceId) : '');
  const rows = [...containers.data].sort((a, b) => naturalCompare(svcOf(a), svcOf(b)) || naturalCompare(a.name, b.name));
  if (format === 'json') return printJson(rows);
  process.stdout.write(
    table(
      ['NAME', 'STATE', 'HEALTH', 'HOST', 'IP', 'SERVICE'],
      rows.map((c) => [c.name, c.state, c.healthState, c.hostId ? (hostName.get(c.hostId) ?? c.hostId) : '', c.primaryIpAddress, svcOf(c)]),
    ),
  );
}

async function scale(args: string[], o: TargetFlags): Promise<void> {
  const api = client(o);
  const wanted = args.map(parseScaleArg);
  // All of them resolved before any changes: a typo in the third does not leave the first two scaled.
  const targets: { arg: string; t: ServiceTarget; scale: number }[] = [];
  for (const [i, w] of wanted.entries()) {
    const arg = args[i] as string;
    const t = await labelled(arg, () => resolveService(api, w.ref, o.stack, `shop/web=${w.scale}`));
    targets.push({ arg, t, scale: w.scale });
  }
  for (const { t, scale: n } of targets) {
    const r = await labelled(`${t.label}=${n}`, () => api.call<ServiceRow>('PUT', `/v1/services/${q(t.service.id)}`, { scale: n }));
    process.stdout.write(`${t.label}: scale ${r.scale}${t.service.scale !== r.scale ? ` (was ${t.service.scale})` : ''}\n`);
  }
}

async function lifecycle(verb: Verb, refs: string[], o: TargetFlags & RestartFlags): Promise<void> {
  const api = client(o);
  const targets: Target[] = [];
  for (const ref of refs) targets.push(await resolveTarget(api, ref, o.stack));
  for (const t of targets) {
    const line = await labelled(t.label, () => act(api, t, verb, o));
    process.stdout.write(`${line}\n`);
  }
}

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`;

export function registerOpsCommands(program: Command): void {
  withConn(
    program
      .command('ps')
      .description("list containers (all, or a stack's): name, state, health, host, IP address, service")
      .argument('[stack]', 'only the containers of this stack')
      .option('--format <format>', 'output: table (default) or json (the container records)'),
  )
    .addHelpText('after', examples(['drover ps', 'drover ps shop', 'drover ps shop --format json']))
    .action(async (stack: string | undefined, o: FormatFlags) => {
      try {
        await ps(stack, o);
      } catch (err) {
        fail(err);
      }
    });

  withConn(
    program
      .command('scale')
      .description("set the number of containers of services (a service's scale)")
      .argument('<service=n...>', 'a service, as <stack>/<service> (or <service> with --stack), and its new scale')
      .option('-s, --stack <name>', 'the stack of services given without one'),
  )
    .addHelpText(
      'after',
      `
All the services are looked up before any changes. The new scale is printed; the containers follow as the
agents start or stop them (drover ps shows them).
${examples(['drover scale shop/web=3', 'drover scale shop/web=3 shop/worker=0', 'drover scale --stack shop web=1 worker=2'])}`,
    )
    .action(async (args: string[], o: TargetFlags) => {
      try {
        await scale(args, o);
      } catch (err) {
        fail(err);
      }
    });

  const lifecycleHelp: Record<Verb, { description: string; extra: string; examples: string[] }> = {
    start: {
      description: 'start services (activate them) or standalone containers',
      extra: 'A service starts as a whole (activate): its containers run again.',
      examples: ['drover start shop/web', 'drover start --stack shop web worker', 'drover start my-container'],
    },
    stop: {
      description: 'stop services (deactivate them) or standalone containers',
      extra: 'A service stops as a whole (deactivate): its containers stop and stay until it starts again.',
      examples: ['drover stop shop/web', 'drover stop --stack shop web worker', 'drover stop my-container'],
    },
    restart: {
      description: 'restart services (rolling, --batch-size at a time) or standalone containers: stop, wait until stopped, start',
      extra:
        "A service restarts --batch-size containers at a time (default 1): they stop, start again once stopped, and\nthe next ones follow --interval ms after they serve; the same containers (ids, addresses, volumes).\nProgress on stderr. Past --timeout the command fails (a service's restart goes on; a standalone container\nis started again).",
      examples: ['drover restart shop/web', 'drover restart shop/web --batch-size 2 --interval 5000', 'drover restart my-container --timeout 120'],
    },
    rm: {
      description: 'remove services (and their containers) or standalone containers',
      extra: 'Nothing is asked: the service or container is removed at once and what was removed is printed.',
      examples: ['drover rm shop/worker', 'drover rm --stack shop worker', 'drover rm my-container'],
    },
  };
  for (const verb of ['start', 'stop', 'restart', 'rm'] as const) {
    const h = lifecycleHelp[verb];
    const cmd = program
      .command(verb)
      .description(h.description)
      .argument('<target...>', 'a service as <stack>/<service> (or <service> with --stack), or a container name (stack-service-1) or id')
      .option('-s, --stack <name>', 'the stack of services given by name alone');
    if (verb === 'restart') {
      cmd
        .option('--timeout <s>', 'seconds to wait for the restart (default 60)', positiveInt('--timeout'))
        .option('--batch-size <n>', "a service's containers restarted at a time (default 1)", positiveInt('--batch-size'))
        .option('--interval <ms>', 'milliseconds between batches, once a batch serves (default 2000)', nonNegativeInt('--interval'));
    }
    withConn(cmd)
      .addHelpText(
        'after',
        `
${h.extra}
A service's containers start and stop with the service; a standalone container by itself.
All the targets are looked up before any changes.
${examples(h.examples)}`,
      )
      .action(async (refs: string[], o: TargetFlags & { timeout?: number }) => {
        try {
          await lifecycle(verb, refs, o);
        } catch (err) {
          fail(err);
        }
      });
  }

  const host = program
    .command('host')
    .description('hosts: list them, set their labels, add one')
    .addHelpText('after', examples(['drover host ls', 'drover host label node1 zone=a disk=ssd', 'drover host add']));

  withConn(
    host
      .command('ls')
      .description('list hosts: id, name, state, agent IP address, labels')
      .option('--format <format>', 'output: table (default) or json (the host records)'),
  )
    .addHelpText('after', examples(['drover host ls', 'drover host ls --format json']))
    .action(async (o: FormatFlags) => {
      try {
        const format = parseFormat(o.format);
        const hosts = (await client(o).call<Listing<HostRow>>('GET', '/v1/hosts')).data.sort((a, b) => naturalCompare(a.name, b.name));
        if (format === 'json') return printJson(hosts);
        process.stdout.write(table(['ID', 'NAME', 'STATE', 'AGENT IP', 'LABELS'], hosts.map((h) => [h.id, h.name, h.state, h.agentIpAddress, labelList(h.labels)])));
      } catch (err) {
        fail(err);
      }
    });

  withConn(
    host
      .command('label')
      .description("set or remove a host's labels (merged into the ones it has)")
      .argument('<host>', 'host id or name (drover host ls lists them)')
      .argument('<label...>', 'key=value sets a label, key- removes it'),
  )
    .addHelpText(
      'after',
      `
The labels not named are kept. The host's labels are printed as they are afterwards. Services
scheduled by host labels (io.rancher.scheduler.affinity:host_label) are placed again.
${examples(['drover host label node1 zone=a disk=ssd', 'drover host label node1 disk-            # removes "disk"', 'drover host label 1h2 zone=b'])}`,
    )
    .action(async (ref: string, args: string[], o: ConnFlags) => {
      try {
        const api = client(o);
        const h = await resolveHost(api, ref);
        const { labels, missing } = applyLabelArgs(h.labels ?? {}, args);
        for (const k of missing) process.stderr.write(`note: host ${h.name} has no label "${k}"\n`);
        const r = await labelled(`host ${h.name}`, () => api.call<HostRow>('PUT', `/v1/hosts/${q(h.id)}`, { labels }));
        process.stdout.write(`${r.name} (${r.id}): ${labelList(r.labels) || 'no labels'}\n`);
      } catch (err) {
        fail(err);
      }
    });

  withConn(
    host
      .command('add')
      .description('make a registration token and print how to start an agent with it on the new host')
      .option('--format <format>', 'output: table (default: the two commands) or json (the token record)'),
  )
    .addHelpText(
      'after',
      `
Prints two lines: the agent in a container (docker run), and the same agent as a plain process on a host
where drover is installed. Run one of them on the new host; it registers with the token.
${examples(['drover host add', 'drover host add --url http://10.0.0.5:8080'])}`,
    )
    .action(async (o: FormatFlags) => {
      try {
        const format = parseFormat(o.format);
        const t = await client(o).call<{ command: string; registrationUrl: string; token: string }>('POST', '/v1/registrationtokens', {});
        if (format === 'json') return printJson(t);
        process.stdout.write(`${t.command}\ndrover agent ${t.registrationUrl}\n`);
      } catch (err) {
        fail(err);
      }
    });
}
