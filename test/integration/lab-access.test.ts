// Logs, shell and stats of a container on another host, through the control plane, on the real-Docker
// lab (test/lab): the user's CLI talks to the control plane only (root netns); it proxies to the agent of
// the container's host (h2) with a token signed for that one request. `drover logs` (plain and -f),
// `drover exec` (exit codes; -it through a real pseudo-terminal from script(1)), `drover stats` of the
// container and of the host; the agent refuses requests without a valid token, and the control plane
// refuses users without a key. Skips (with the reason) when the lab cannot run here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { labUnavailable, waitFor, type LabHost } from '../lab/lab.js';
import { LAB_ADMIN, withDroverLab } from '../lab/drover.js';
import { runCli, CLI_MAIN, type CliRun } from '../helpers/cli.js';
import { ACCESS_TOKEN_HEADER, signAccess } from '../../src/common/access-token.js';

const skip = labUnavailable();
const j = (v: unknown) => JSON.stringify(v);

const COMPOSE = `
talk:
  image: drover-test/busybox:1
  command: [sh, -c, "trap 'exit 0' TERM; i=0; while :; do i=$$((i+1)); echo line $$i; echo err $$i >&2; sleep 0.2; done"]
  labels:
    io.rancher.scheduler.affinity:host_label: hostname=h2
`;

interface Rec {
  id: string;
  name: string;
  state: string;
  externalId: string | null;
  hostId: string;
}

test('lab: drover logs -f, exec -it and stats of a container on another host, through the control plane', { skip: skip ? `skipped: ${skip}` : false, timeout: 300_000 }, async (t) => {
  await withDroverLab(2, {}, async ({ lab, cp, cliEnv: env }) => {
    const api = cp.api.bind(cp);
    const h2 = lab.hosts[1] as LabHost;
    const drover = (args: string[]): Promise<CliRun> => runCli(args, env);
    const st = await api<{ id: string }>('POST', '/v1/stacks', { name: 'chat', dockerCompose: COMPOSE });
    assert.equal(st.status, 201, j(st.body));
    const c = await waitFor(
      async () => {
        const r = (await api<{ data: Rec[] }>('GET', `/v1/containers?stackId=${st.body.id}`)).body.data[0];
        return r?.state === 'running' && r.externalId ? r : undefined;
      },
      120_000,
      'the container running on h2',
    );
    const h2rec = (await api<{ id: string; name: string }>('GET', `/v1/hosts/${c.hostId}`)).body;
    assert.equal(h2rec.name, 'h2');

    await t.test('logs: stdout and stderr, --tail; -f follows new lines; by stack/service too', async () => {
      await waitFor(async () => ((await drover(['logs', c.name])).stdout.includes('line 3') ? true : undefined), 20_000, 'three lines logged');
      const all = await drover(['logs', c.name]);
      assert.equal(all.status, 0, all.stderr);
      assert.match(all.stdout, /^line 1\n/m);
      assert.match(all.stdout, /^err 1\n/m, 'stderr too');
      const tail = await drover(['logs', '--tail', '2', 'chat/talk']);
      assert.equal(tail.status, 0, tail.stderr);
      assert.equal(tail.stdout.trim().split('\n').length, 2, tail.stdout);
      // -f: new lines keep coming through the control plane.
      const child = spawn(process.execPath, ['--import', 'tsx', CLI_MAIN, 'logs', '-f', '--tail', '1', c.name], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      try {
        const seen = await waitFor(() => {
          const ns = [...out.matchAll(/^line (\d+)$/gm)].map((m) => Number(m[1]));
          return ns.length >= 4 ? ns : undefined;
        }, 30_000, 'four lines followed');
        assert.ok(seen.every((n, i) => i === 0 || n > (seen[i - 1] as number)), `in order: ${seen.join(',')}`);
      } finally {
        child.kill('SIGTERM');
      }
    });

    await t.test('exec: output and exit codes; -it gets a real terminal (script(1) gives the CLI a pseudo-terminal)', async () => {
      const echo = await drover(['exec', c.name, 'sh', '-c', 'echo hello from $(hostname); echo oops >&2']);
      assert.equal(echo.status, 0, echo.stderr);
      assert.match(echo.stdout, /hello from /);
      assert.match(echo.stdout, /oops/);
      const code = await drover(['exec', c.name, 'sh', '-c', 'exit 7']);
      assert.equal(code.status, 7, 'the command’s exit code');
      // A real PTY on our side: script runs the CLI with its stdin/stdout on a pseudo-terminal.
      const cmd = [process.execPath, '--import', 'tsx', CLI_MAIN, 'exec', '-it', c.name, 'sh'].map((a) => `'${a}'`).join(' ');
      const pty = spawn('script', ['-qfec', cmd, '/dev/null'], { env: { ...process.env, ...env, TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      pty.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => pty.once('close', (s) => r(s)));
      await waitFor(() => (out.includes('#') || out.includes('$') ? true : undefined), 30_000, 'a shell prompt');
      pty.stdin.write('echo answer=$((6*7)); tty; [ -t 0 ] && echo IS-A-TTY\r');
      await waitFor(() => (/IS-A-TTY/.test(out.replace('&& echo IS-A-TTY', '')) ? true : undefined), 20_000, `the tty check (${out.slice(-300)})`);
      assert.match(out, /answer=42/);
      assert.match(out, /\/dev\/pts\/\d+/, 'the command runs on a terminal in the container');
      pty.stdin.write('exit 5\r');
      assert.equal(await exited, 5, 'the shell’s exit code comes back through the terminal session');
    });

    await t.test('stats: the container on h2 and the host h2, JSON samples through the control plane', async () => {
      const cs = await drover(['stats', c.name, '-n', '2', '--format', 'json']);
      assert.equal(cs.status, 0, cs.stderr);
      const samples = cs.stdout.trim().split('\n').map((l) => JSON.parse(l) as { cpuPercent: number; memory: { usage: number; limit: number }; network: { rxBytes: number } });
      assert.equal(samples.length, 2);
      assert.ok(samples.every((s) => s.memory.usage > 0 && s.memory.limit > 0 && s.cpuPercent >= 0), cs.stdout);
      const hs = await drover(['stats', '--host', 'h2', '-n', '2']);
      assert.equal(hs.status, 0, hs.stderr);
      assert.match(hs.stdout, /cpu \d+\.\d%\s+mem [\d.]+ MiB \/ [\d.]+ MiB\s+net rx (-|[\d.]+ KiB\/s) tx/);
    });

    await t.test('refusals: the agent without a valid token, the control plane without a key', async () => {
      const agentUrl = `http://${h2.ip}:9346`;
      const path = `/containers/${c.externalId as string}/logs`;
      const none = await fetch(agentUrl + path);
      assert.equal(none.status, 401);
      assert.match(await none.text(), /no access token/);
      const wrongKey = await fetch(agentUrl + path, { headers: { [ACCESS_TOKEN_HEADER]: signAccess('00'.repeat(32), 'GET', path) } });
      assert.equal(wrongKey.status, 401);
      assert.match(await wrongKey.text(), /bad access token/);
      const noKey = await fetch(`${cp.url}/v1/containers/${c.id}/logs`);
      assert.equal(noKey.status, 401);
      const badUser = await runCli(['exec', c.name, 'true'], { ...env, DROVER_SECRET_KEY: 'wrong-secret-0123456789' });
      assert.equal(badUser.status, 3);
      assert.match(badUser.stderr, /Unauthorized/);
      const query = await fetch(`${cp.url}/v1/containers/${c.id}/logs?bogus=1`, { headers: { authorization: 'Basic ' + Buffer.from(`${LAB_ADMIN.accessKey}:${LAB_ADMIN.secretKey}`).toString('base64') } });
      assert.equal(query.status, 422);
    });
  });
});
