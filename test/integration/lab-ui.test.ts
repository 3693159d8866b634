// The web UI's container page on the real-Docker lab (test/lab), in headless Chromium: logs stream, a
// command typed into "Execute Shell" (xterm.js over the exec websocket, opened with a one-use token
// from `?action=execute`) prints its output in the terminal, and the stats charts (the container's, the
// host's on the hosts page) receive samples; a batched upgrade shows its batch in progress, then finishes. The
// browser talks to the control plane only (root netns); the control plane proxies to the agent of the
// container's host. Skips (with the reason) when the lab or Chromium cannot run here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { labUnavailable, waitFor } from '../lab/lab.js';
import { LAB_ADMIN, withDroverLab } from '../lab/drover.js';
import { tempDir } from '../helpers/server.js';
import { browserUnavailable, buildUi, launchBrowser, loggedIn, screenshot, watchProblems } from '../helpers/browser.js';

const skip = labUnavailable() ?? browserUnavailable();

const COMPOSE = `
talk:
  image: drover-test/busybox:1
  command: [sh, -c, "trap 'exit 0' TERM; i=0; while :; do i=$$((i+1)); echo line $$i; sleep 0.2; done"]
`;

const ROLL = `
web:
  image: drover-test/busybox:1
  command: [sh, -c, "trap 'exit 0' TERM; while :; do sleep 1; done"]
`;

test('lab: the container page streams logs, runs a shell command in the terminal and charts stats; host stats; a batched upgrade shows its progress', { skip: skip ? `skipped: ${skip}` : false, timeout: 300_000 }, async () => {
  const uiDir = buildUi(join(tempDir('drover-lab-ui-'), 'ui'));
  await withDroverLab(1, { uiDir }, async ({ cp }) => {
    const st = await cp.api<{ id: string }>('POST', '/v1/stacks', { name: 'chat', dockerCompose: COMPOSE });
    assert.equal(st.status, 201, JSON.stringify(st.body));
    const c = await waitFor(
      async () => {
        const r = (await cp.api<{ data: { id: string; state: string; externalId: string | null }[] }>('GET', `/v1/containers?stackId=${st.body.id}`)).body.data[0];
        return r?.state === 'running' && r.externalId ? r : undefined;
      },
      120_000,
      'the container running',
    );

    // A ticket opens its one session only: the same token a second time is refused.
    const access = await cp.api<{ url: string; token: string }>('POST', `/v1/containers/${c.id}?action=stats`, {});
    assert.equal(access.status, 200, JSON.stringify(access.body));
    assert.match(access.body.url, /^ws:\/\/.*\/v1\/containers\/.*\/stats$/);
    const open = (url: string) =>
      new Promise<{ sample?: string; status?: number }>((resolve) => {
        const ws = new WebSocket(url);
        ws.once('message', (m: Buffer) => {
          ws.close();
          resolve({ sample: m.toString() });
        });
        ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode ?? 0 }));
        ws.once('error', () => resolve({ status: -1 }));
      });
    const withToken = `${access.body.url}?token=${access.body.token}`;
    const first = await open(withToken);
    assert.match(first.sample ?? '', /"cpuPercent"/, 'the ticket opens the stats stream');
    assert.equal((await open(withToken)).status, 401, 'a second use of the same ticket is refused');
    assert.equal((await open(`${access.body.url}?token=made-up`)).status, 401);

    const browser = await launchBrowser();
    try {
      const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
      const problems = watchProblems(page);
      await loggedIn(page, LAB_ADMIN);
      await page.goto(`${cp.url}/#/containers/${c.id}`);

      // Logs: the container's lines arrive, and keep arriving (follow).
      const logs = page.locator('pre.logs');
      await waitFor(async () => ((await logs.innerText()).includes('line 3') ? true : undefined), 30_000, 'three log lines in the page');
      const seen = Math.max(...[...(await logs.innerText()).matchAll(/line (\d+)/g)].map((m) => Number(m[1])));
      await waitFor(async () => (new RegExp(`line ${seen + 3}\\b`).test(await logs.innerText()) ? true : undefined), 30_000, 'followed log lines');

      // Execute Shell: type a command, read its output in the terminal.
      await page.getByRole('button', { name: 'Execute Shell' }).click();
      await page.getByRole('status').filter({ hasText: 'connected' }).waitFor({ timeout: 30_000 });
      await page.locator('.terminal .xterm-helper-textarea').focus();
      await page.keyboard.type('echo answer=$((6*7)); [ -t 0 ] && echo IS-A-TTY\n');
      const rows = page.locator('.terminal .xterm-rows');
      await waitFor(async () => {
        const t = await rows.innerText();
        return /answer=42/.test(t) && /^IS-A-TTY/m.test(t) ? true : undefined;
      }, 20_000, 'the command output in the terminal');
      await page.keyboard.type('exit 3\n');
      await page.getByRole('status').filter({ hasText: 'exited with code 3' }).waitFor({ timeout: 20_000 });

      // Stats: samples arrive and the chart draws them.
      await waitFor(async () => (Number(await page.locator('.stats-now').getAttribute('data-samples')) >= 2 ? true : undefined), 30_000, 'two stats samples');
      assert.match(await page.locator('.stats-now').innerText(), /CPU \d+\.\d % · memory [\d.]+ MiB/);
      assert.equal(await page.locator('.chart canvas').count(), 1);
      await screenshot(page, 'container');

      // The host's stats, from the hosts page.
      await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Hosts' }).click();
      const h1 = page.locator('tr[data-host="h1"]');
      await h1.getByRole('button', { name: 'Stats' }).click();
      await waitFor(async () => (Number(await h1.locator('.stats-now').getAttribute('data-samples')) >= 2 ? true : undefined), 30_000, 'two host stats samples');
      assert.match(await h1.locator('.stats-now').innerText(), /CPU \d+\.\d % · memory [\d.]+ MiB/);
      await screenshot(page, 'hosts-stats');

      // A batched upgrade of a service of 2 (the same image: a redeploy), one at a time: the page shows
      // the batch in progress, then "Upgraded"; Finish upgrade ends it.
      const roll = await cp.api<{ id: string }>('POST', '/v1/stacks', { name: 'roll', dockerCompose: ROLL, rancherCompose: 'web:\n  scale: 2\n' });
      assert.equal(roll.status, 201, JSON.stringify(roll.body));
      await page.evaluate(`location.hash = '#/stacks/${roll.body.id}'`);
      const web = page.locator('tr[data-service="web"]');
      await waitFor(async () => ((await web.locator('.health').innerText()) === '2/2 running' ? true : undefined), 120_000, 'both containers running');
      await web.getByLabel('Batch size').fill('1');
      await web.getByRole('button', { name: 'Upgrade' }).click();
      await web.getByText(/Upgrading: 1 replacing now, 1 to go of 2/).waitFor({ timeout: 60_000 });
      await screenshot(page, 'upgrade-progress');
      await web.getByText(/^Upgraded:/).waitFor({ timeout: 120_000 });
      await web.getByRole('button', { name: 'Finish upgrade' }).click();
      await waitFor(async () => ((await web.locator('.progress').count()) === 0 ? true : undefined), 30_000, 'the upgrade finished');
      const svc = (await cp.api<{ data: { state: string }[] }>('GET', `/v1/services?stackId=${roll.body.id}`)).body.data[0];
      assert.equal(svc?.state, 'active');
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });
});
