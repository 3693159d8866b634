// The drover CLI as a user runs it: --help everywhere, `server --data --listen`, `stack up/export/ls/rm`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, eventually, tempDir } from '../helpers/server.js';
import { freePort } from '../helpers/ports.js';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const drover = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });


test('every command has a --help that explains its flags', () => {
  const top = drover(['--help']);
  assert.equal(top.status, 0);
  // Every command and subcommand (README: "Every command explains its flags with --help").
  const flags: Record<string, string[]> = {
    server: ['--data <dir>', '--listen <host:port>', '--advertise-url <url>', '--config <file>', '--log-level <level>'],
    agent: ['--server <url>', '--token <token>', '--agent-ip <ip>', '--labels <k=v,...>'],
    up: ['--data <dir>', '--listen <host:port>', '--metrics-listen <host:port>'],
    dns: ['--answers <file>', '--listen <addr>', '--reload-listen <addr>', '--udp-transport <kind>'],
    metadata: ['--answers <file>', '--listen <addr>', '--reload-listen <addr>', '--require-header <name=value>'],
    'stack up': ['-f, --file <file...>', '-n, --name <name>', '--answers <file>', '--access-key <key>'],
    'stack export': ['-o, --output <dir>'],
    'stack ls': ['--url <url>'],
    'stack rm': ['--url <url>'],
  };
  for (const cmd of ['up', 'server', 'agent', 'stack', 'dns', 'metadata']) assert.match(top.stdout, new RegExp(`^\\s+${cmd}\\b`, 'm'));
  const stack = drover(['stack', '--help']);
  for (const cmd of ['up', 'export', 'ls', 'rm']) assert.match(stack.stdout, new RegExp(`^\\s+${cmd}\\b`, 'm'));
  for (const [cmd, fl] of Object.entries(flags)) {
    const r = drover([...cmd.split(' '), '--help']);
    assert.equal(r.status, 0, `${cmd} --help`);
    for (const f of fl) assert.ok(r.stdout.includes(f), `${cmd} --help mentions ${f}`);
    // every option line has an explanation after it
    for (const line of r.stdout.split('\n').filter((l) => /^\s+-/.test(l))) assert.match(line, /\S\s{2,}\S/, `explained: ${line}`);
  }
  const bad = drover(['server', '--listen', 'nonsense']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--listen: "nonsense" is not HOST:PORT/);
});

test('drover server --data DIR --listen HOST:PORT; then stack up, ls, export and rm through the CLI', async () => {
  const dir = tempDir();
  const port = await freePort();
  let child: ChildProcess | undefined;
  try {
    child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'server', '--data', dir, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const m = await eventually(() => /DROVER_ACCESS_KEY=(\S+) DROVER_SECRET_KEY=(\S+)/.exec(out), 20_000, 'the first admin key');
    assert.ok(existsSync(join(dir, 'server', 'drover.db')), 'the database lives under --data');
    const env = { DROVER_URL: `http://127.0.0.1:${port}`, DROVER_ACCESS_KEY: m[1] as string, DROVER_SECRET_KEY: m[2] as string };

    const proj = join(dir, 'proj');
    mkdirSync(proj);
    writeFileSync(join(proj, 'docker-compose.yml'), 'web:\n  image: nginx\n  links: [db]\ndb:\n  image: postgres\n');
    writeFileSync(join(proj, 'rancher-compose.yml'), 'web:\n  scale: 0\n  metadata:\n    tier: front\n');
    const up = drover(['stack', 'up', '-f', join(proj, 'docker-compose.yml'), '-f', join(proj, 'rancher-compose.yml'), '-n', 'shop', '-d'], env);
    assert.equal(up.status, 0, up.stderr);
    assert.match(up.stdout, /stack shop \(1st\d+\) created: web×0, db×1/);

    const ls = drover(['stack', 'ls'], env);
    assert.match(ls.stdout, /\tshop\tactive/);

    const outDir = join(dir, 'exported');
    mkdirSync(outDir);
    const ex = drover(['stack', 'export', 'shop', '-o', outDir], env);
    assert.equal(ex.status, 0, ex.stderr);
    assert.match(readFileSync(join(outDir, 'docker-compose.yml'), 'utf8'), /links:\s*\n\s*- db/);
    assert.match(readFileSync(join(outDir, 'rancher-compose.yml'), 'utf8'), /tier: front/);

    const broken = join(proj, 'bad.yml');
    writeFileSync(broken, 'web:\n  image: nginx\n  ports: ["x:80"]\n');
    const bad = drover(['stack', 'up', '-f', broken, '-n', 'bad', '-d'], env);
    assert.equal(bad.status, 1);
    assert.ok(bad.stderr.startsWith(`error: ${broken}, service "web", field "ports[0]"`), `the error names the user's file: ${bad.stderr}`);

    const noKey = drover(['stack', 'ls'], { DROVER_URL: env.DROVER_URL, DROVER_ACCESS_KEY: '', DROVER_SECRET_KEY: '', DROVER_DATA_DIR: join(dir, 'none') });
    assert.notEqual(noKey.status, 0);
    assert.match(noKey.stderr, /no API key/);

    const rm = drover(['stack', 'rm', 'shop'], env);
    assert.equal(rm.status, 0, rm.stderr);
    assert.doesNotMatch(drover(['stack', 'ls'], env).stdout, /shop/);
  } finally {
    child?.kill('SIGTERM');
    if (child && child.exitCode === null) await new Promise((r) => child?.once('exit', r));
    assert.equal(child?.exitCode, 0, 'graceful shutdown on SIGTERM exits 0');
    cleanup(dir);
  }
});
