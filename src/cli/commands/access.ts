// drover logs / exec / stats: a container's logs, a shell in it and its stats, wherever it runs, through
// the control plane (src/server/api/access-proxy.ts → the host's agent).
import { InvalidArgumentError, type Command } from 'commander';
import WebSocket from 'ws';
import type { ApiClient } from '../api-client.js';
import { resolveCredentials } from '../api-client.js';
import { DroverError, ValidationError } from '../../common/errors.js';
import { loadConfig } from '../../config/config.js';
import { client, withConn, type ConnFlags } from './conn.js';

interface ContainerRow {
  id: string;
  name: string;
  state: string;
  serviceId: string | null;
}

function fail(err: unknown): never {
  const e = err as { message?: string; status?: number };
  process.stderr.write(`error: ${e.message ?? String(err)}\n`);
  process.exit(e.status === 401 ? 3 : 1);
}

/** Containers named by TARGET: a container id or name (`stack-service-1`), or `stack/service` (all of its). */
export async function containersOf(api: ApiClient, target: string): Promise<ContainerRow[]> {
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(target);
  if (m) {
    const stacks = await api.call<{ data: { id: string }[] }>('GET', `/v1/stacks?name=${encodeURIComponent(m[1] as string)}`);
    const st = stacks.data[0];
    if (!st) throw new ValidationError('NotFound', `no stack "${m[1]}" (drover stack ls lists them)`);
    const svc = (await api.call<{ data: { id: string }[] }>('GET', `/v1/services?stackId=${st.id}&name=${encodeURIComponent(m[2] as string)}`)).data[0];
    if (!svc) throw new ValidationError('NotFound', `stack ${m[1]} has no service "${m[2]}" (drover ps lists containers)`);
    const cs = (await api.call<{ data: ContainerRow[] }>('GET', `/v1/containers?serviceId=${svc.id}`)).data;
    if (!cs.length) throw new ValidationError('NotFound', `${target} has no containers`);
    return cs;
  }
  const byId = await api.call<ContainerRow>('GET', `/v1/containers/${encodeURIComponent(target)}`).catch(() => undefined);
  if (byId?.id) return [byId];
  const byName = (await api.call<{ data: ContainerRow[] }>('GET', `/v1/containers?name=${encodeURIComponent(target)}`)).data;
  if (!byName.length) throw new ValidationError('NotFound', `no container "${target}" (drover ps lists them)`);
  return byName;
}

function creds(o: ConnFlags) {
  return resolveCredentials(o, o.data ?? loadConfig().dataDir);
}

/** Streams one container's logs to stdout, each line prefixed when `prefix` is given. */
async function streamLogs(o: ConnFlags, c: ContainerRow, q: URLSearchParams, prefix: string | undefined): Promise<void> {
  const cr = creds(o);
  const res = await fetch(`${cr.url.replace(/\/+$/, '')}/v1/containers/${c.id}/logs?${q.toString()}`, {
    headers: { authorization: 'Basic ' + Buffer.from(`${cr.accessKey}:${cr.secretKey}`).toString('base64') },
  }).catch((err: unknown) => {
    throw new DroverError(503, 'Unreachable', `cannot reach the control plane at ${cr.url}: ${(err as Error).message}`);
  });
  if (!res.ok || !res.body) {
    const text = await res.text();
    let msg = text.trim();
    try {
      msg = String((JSON.parse(text) as { message?: string }).message ?? msg);
    } catch {
      // plain text from the agent
    }
    throw new DroverError(res.status, 'LogsFailed', `${c.name}: ${msg}`);
  }
  let rest = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body) {
    const text = rest + decoder.decode(chunk as Uint8Array, { stream: true });
    if (!prefix) {
      process.stdout.write(text);
      continue;
    }
    const lines = text.split('\n');
    rest = lines.pop() ?? '';
    for (const l of lines) process.stdout.write(`${prefix}${l}\n`);
  }
  if (prefix && rest) process.stdout.write(`${prefix}${rest}\n`);
}

const since = (v: string): number => {
  const m = /^(\d+)(s|m|h)?$/.exec(v);
  if (m) {
    const n = Number(m[1]);
    // A bare number is a unix time; with a unit it is "that long ago".
    return m[2] ? Math.floor(Date.now() / 1000) - n * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1) : n;
  }
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new InvalidArgumentError(`--since takes a duration (10m, 2h, 30s), a unix time or an ISO date, got "${v}"`);
  return Math.floor(t / 1000);
};

function wsUrl(o: ConnFlags, path: string): { url: string; headers: Record<string, string> } {
  const cr = creds(o);
  return {
    url: cr.url.replace(/\/+$/, '').replace(/^http/, 'ws') + path,
    headers: { authorization: 'Basic ' + Buffer.from(`${cr.accessKey}:${cr.secretKey}`).toString('base64') },
  };
}

/** Opens a websocket through the control plane; an HTTP refusal becomes the API's message. */
function openWs(o: ConnFlags, path: string): Promise<WebSocket> {
  const { url, headers } = wsUrl(o, path);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        let msg = body.trim();
        try {
          msg = String((JSON.parse(body) as { message?: string }).message ?? msg);
        } catch {
          // not JSON
        }
        reject(new DroverError(res.statusCode ?? 500, 'AccessFailed', msg || `HTTP ${res.statusCode}`));
      });
    });
    ws.once('error', (err) => reject(new DroverError(503, 'Unreachable', `cannot open ${url}: ${err.message}`)));
  });
}

export function registerAccessCommands(program: Command): void {
  withConn(
    program
      .command('logs')
      .description("a container's logs, or those of every container of a service (prefixed), from whichever host runs it")
      .argument('<target>', 'container name or id, or <stack>/<service>')
      .option('-f, --follow', 'keep streaming new lines')
      .option('--since <when>', 'from this long ago (10m, 2h, 30s), a unix time or an ISO date', since)
      .option('--tail <n>', 'only the last n lines of each container', (v) => {
        if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`--tail takes a number of lines, got "${v}"`);
        return Number(v);
      })
      .option('-t, --timestamps', "Docker's timestamp before each line")
      .addHelpText('after', '\nExamples:\n  drover logs -f cassandra/cdb1\n  drover logs --since 10m --tail 100 cassandra-cdb1-1'),
  ).action(async (target: string, o: ConnFlags & { follow?: boolean; since?: number; tail?: number; timestamps?: boolean }) => {
    try {
      const cs = await containersOf(client(o), target);
      const q = new URLSearchParams();
      if (o.follow) q.set('follow', '1');
      if (o.since !== undefined) q.set('since', String(o.since));
      if (o.tail !== undefined) q.set('tail', String(o.tail));
      if (o.timestamps) q.set('timestamps', '1');
      const width = Math.max(...cs.map((c) => c.name.length));
      await Promise.all(cs.map((c) => streamLogs(o, c, q, cs.length > 1 ? `${c.name.padEnd(width)} | ` : undefined)));
    } catch (err) {
      fail(err);
    }
  });

  withConn(
    program
      .command('exec')
      .description('run a command in a container on whichever host runs it (-it: an interactive shell with a terminal)')
      .argument('<container>', 'container name or id')
      .argument('[command...]', 'the command and its arguments (default: sh)')
      .option('-i, --interactive', 'send this terminal\'s input to the command')
      .option('-t, --tty', 'give the command a terminal (raw mode here; resized with this window)')
      // Everything after the container is the command's (`drover exec c sh -c 'ls -l'`).
      .passThroughOptions()
      .addHelpText('after', '\nExamples:\n  drover exec -it cassandra-cdb1-1 sh\n  drover exec cassandra-cdb1-1 cat /etc/hostname'),
  ).action(async (target: string, command: string[], o: ConnFlags & { interactive?: boolean; tty?: boolean }) => {
    try {
      const cs = await containersOf(client(o), target);
      if (cs.length !== 1) throw new ValidationError('Ambiguous', `${target} names ${cs.length} containers: give one (${cs.map((c) => c.name).join(', ')})`);
      const c = cs[0] as ContainerRow;
      const cmd = command.length ? command : ['sh'];
      const q = new URLSearchParams({ cmd: JSON.stringify(cmd), ...(o.tty ? { tty: '1' } : {}) });
      const ws = await openWs(o, `/v1/containers/${c.id}/exec?${q.toString()}`);
      const stdin = process.stdin;
      const raw = o.tty === true && stdin.isTTY === true;
      const resize = () => {
        if (o.tty && process.stdout.isTTY) ws.send(JSON.stringify({ resize: [process.stdout.columns, process.stdout.rows] }));
      };
      resize();
      process.stdout.on('resize', resize);
      if (raw) stdin.setRawMode(true);
      if (o.interactive) {
        stdin.on('data', (d: Buffer) => ws.send(d, { binary: true }));
        stdin.on('end', () => ws.send(JSON.stringify({ eof: true })));
        stdin.resume();
      }
      let code = 0;
      ws.on('message', (data, isBinary) => {
        if (isBinary) process.stdout.write(data as Buffer);
        else {
          try {
            const m = JSON.parse(String(data)) as { exit?: number };
            if (typeof m.exit === 'number') code = m.exit;
          } catch {
            // not a control message
          }
        }
      });
      await new Promise<void>((resolve) => ws.once('close', (status: number, reason: Buffer) => {
        if (status !== 1000 && status !== 1005) {
          process.stderr.write(`error: ${reason.toString() || `the session ended (${status})`}\n`);
          code = code || 1;
        }
        resolve();
      }));
      if (raw) stdin.setRawMode(false);
      process.exit(code);
    } catch (err) {
      fail(err);
    }
  });

  withConn(
    program
      .command('stats')
      .description("a container's (or, with --host, a host's) CPU, memory and network, a line per second")
      .argument('[container]', 'container name or id')
      .option('--host <host>', 'a host (id or name) instead of a container')
      .option('-n, --count <n>', 'stop after n samples', (v) => {
        if (!/^[1-9]\d*$/.test(v)) throw new InvalidArgumentError(`--count takes a positive number, got "${v}"`);
        return Number(v);
      })
      .option('--format <format>', 'text (default) or json (one object per line)')
      .addHelpText('after', '\nExamples:\n  drover stats cassandra-cdb1-1\n  drover stats --host cassandra2 -n 5 --format json'),
  ).action(async (target: string | undefined, o: ConnFlags & { host?: string; count?: number; format?: string }) => {
    try {
      if (!target === !o.host) throw new ValidationError('InvalidArgument', 'give a container or --host, one of them');
      if (o.format !== undefined && o.format !== 'text' && o.format !== 'json') throw new ValidationError('InvalidArgument', `--format is text or json, got "${o.format}"`);
      const api = client(o);
      let path: string;
      if (o.host) {
        const hosts = (await api.call<{ data: { id: string; name: string; hostname?: string }[] }>('GET', '/v1/hosts')).data;
        const h = hosts.find((x) => x.id === o.host || x.name === o.host || x.hostname === o.host);
        if (!h) throw new ValidationError('NotFound', `no host "${o.host}" (drover host ls lists them)`);
        path = `/v1/hosts/${h.id}/stats`;
      } else {
        const cs = await containersOf(api, target as string);
        if (cs.length !== 1) throw new ValidationError('Ambiguous', `${target} names ${cs.length} containers: give one`);
        path = `/v1/containers/${(cs[0] as ContainerRow).id}/stats`;
      }
      const ws = await openWs(o, path);
      let n = 0;
      let prev: { rx: number; tx: number; at: number } | undefined;
      ws.on('message', (data) => {
        const s = JSON.parse(String(data)) as { at: string; cpuPercent: number; memory: { usage: number; limit: number }; network: { rxBytes: number; txBytes: number } };
        if (o.format === 'json') process.stdout.write(`${JSON.stringify(s)}\n`);
        else {
          const at = Date.parse(s.at);
          const rate = (now: number, before: number | undefined) => (prev && before !== undefined && at > prev.at ? `${(((now - before) / (at - prev.at)) * 1000 / 1024).toFixed(1)} KiB/s` : '-');
          const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
          process.stdout.write(`${s.at}  cpu ${s.cpuPercent.toFixed(1)}%  mem ${mib(s.memory.usage)} / ${mib(s.memory.limit)}  net rx ${rate(s.network.rxBytes, prev?.rx)} tx ${rate(s.network.txBytes, prev?.tx)}\n`);
          prev = { rx: s.network.rxBytes, tx: s.network.txBytes, at };
        }
        if (o.count !== undefined && ++n >= o.count) ws.close(1000);
      });
      await new Promise<void>((resolve, reject) =>
        ws.once('close', (code: number, reason: Buffer) => (code === 1000 || code === 1005 ? resolve() : reject(new DroverError(502, 'StatsEnded', reason.toString() || `the stream ended (${code})`)))),
      );
    } catch (err) {
      fail(err);
    }
  });
}
