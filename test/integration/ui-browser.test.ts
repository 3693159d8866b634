// The web UI in a real browser: headless Chromium (Debian's `chromium` package) driven by
// playwright-core, against a real control plane serving the UI built from src/ui by the same build
// script as `npm run build`. The daily path: log in, add a host, edit its labels, import a stack,
// a bad compose file, scale up and down, upgrade and roll back, "View in API" — every step seen in the
// page without reloading it, and checked against the API. Screenshots of each page go to
// test-artifacts/ui/ (kept after the run).
import { strict as assert } from 'node:assert';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { silentLogger } from '../../src/common/log.js';
import { ADMIN, request, tempDir } from '../helpers/server.js';
import { eventually } from '../helpers/wait.js';
import { testCertificate } from '../helpers/certs.js';
import { browserUnavailable, buildUi, launchBrowser, screenshot, watchProblems } from '../helpers/browser.js';

const skip = browserUnavailable();

describe('web UI in headless Chromium', { skip: skip ?? false }, () => {
  let dir: string;
  let srv: RunningServer;
  let browser: Browser;
  let page: Page;
  let problems: string[] = [];
  const api = <T>(method: string, path: string, body?: unknown) => request<T>(srv.url, method, path, body, ADMIN);
  const shot = (name: string) => screenshot(page, name);

  before(async () => {
    dir = tempDir('drover-ui-');
    const uiDir = buildUi(join(dir, 'ui'));
    srv = await startServer({
      dataDir: join(dir, 'data'),
      host: '127.0.0.1',
      port: 0,
      log: silentLogger(),
      adminAccessKey: ADMIN.accessKey,
      adminSecretKey: ADMIN.secretKey,
      uiDir,
    });
    browser = await launchBrowser();
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await ctx.newPage();
    // The test provokes failed fetches on purpose: a wrong key (401), a bad compose file and a missing
    // catalog answer, a bad certificate key (400/422).
    problems = watchProblems(page, [/^HTTP 401 GET \S+\/v1\/environments$/, /^HTTP 4(00|22) POST \S+\/v1\/(stacks|certificates|services\/\S+\?action=upgrade)$/, /^console error: Failed to load resource: .* status of (400|401|422)/]);
  });

  after(async () => {
    await browser?.close();
    await srv?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the UI is served at / with a strict CSP, without a key', async () => {
    const r = await fetch(`${srv.url}/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/html/);
    assert.match(r.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const js = await fetch(`${srv.url}/ui/app.js`);
    assert.equal(js.status, 200);
    const etag = js.headers.get('etag') ?? '';
    assert.equal((await fetch(`${srv.url}/ui/app.js`, { headers: { 'if-none-match': etag } })).status, 304);
    assert.equal((await fetch(`${srv.url}/ui/nope.js`)).status, 404);
    assert.equal((await fetch(`${srv.url}/favicon.ico`)).status, 404, 'not the API 401 (browsers ask for it)');
    // The API still wants its key; the UI's calls are challenged with a scheme browsers do not prompt for.
    const plain = await fetch(`${srv.url}/v1/stacks`);
    assert.equal(plain.status, 401);
    assert.equal(plain.headers.get('www-authenticate'), 'Basic realm="drover"');
    const fromUi = await fetch(`${srv.url}/v1/stacks`, { headers: { 'x-drover-ui': '1' } });
    assert.equal(fromUi.status, 401);
    assert.equal(fromUi.headers.get('www-authenticate'), 'DroverKey realm="drover"');
  });

  test('log in: a wrong key is refused with the API message; the right one opens the UI', async () => {
    await page.goto(`${srv.url}/`);
    await page.getByLabel('Access key').fill(ADMIN.accessKey);
    await page.getByLabel('Secret key').fill('wrong-secret');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').waitFor();
    assert.match(await page.getByRole('alert').innerText(), /nauthori|invalid|key/i);
    await shot('login-error');
    await page.getByLabel('Secret key').fill(ADMIN.secretKey);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('navigation', { name: 'main' }).waitFor();
    await page.getByText(/live · revision \d+/).waitFor();
    await shot('stacks-empty');
  });

  test('hosts: "Add host" shows the registration command; a host that registers appears live; its labels edited inline reach the API', async () => {
    await page.getByRole('link', { name: 'Hosts' }).click();
    await page.getByRole('button', { name: 'Add host' }).click();
    const cmd = await page.locator('#register-command').innerText();
    assert.match(cmd, /docker run .* http:\/\/127\.0\.0\.1:\d+\/v1\/scripts\/\S+/);
    // The command's token registers a host (what the agent does with it).
    const token = /\/v1\/scripts\/(\S+)/.exec(cmd)![1]!;
    const reg = await request<{ host: { id: string } }>(srv.url, 'POST', '/v1/agent/register', { token, hostname: 'node1', agentIpAddress: '192.0.2.21' });
    assert.equal(reg.status, 201);
    const row = page.locator('tr[data-host="node1"]');
    await row.waitFor();
    await shot('hosts');
    await row.getByLabel('Labels of node1').fill('zone=a, hostname=node1');
    await row.getByRole('button', { name: 'Save' }).click();
    await assertEventually(async () => {
      const h = await api<{ labels: Record<string, string> }>('GET', `/v1/hosts/${reg.body.host.id}`);
      assert.deepEqual(h.body.labels, { zone: 'a', hostname: 'node1' });
    });
    // A bad entry is refused next to the input, nothing sent.
    await row.getByLabel('Labels of node1').fill('zone');
    await row.getByRole('button', { name: 'Save' }).click();
    assert.match(await row.getByRole('alert').innerText(), /"zone" is not key=value/);
  });

  test('stacks: a bad compose file shows the API error at the docker-compose input; a good one imports and its service appears', async () => {
    await page.getByRole('link', { name: 'Stacks' }).click();
    await page.getByLabel('Stack name').fill('web');
    await page.getByLabel('docker-compose.yml', { exact: true }).fill('web:\n  image: nginx:1.25\n  no_such_key: 1\n');
    await page.getByRole('button', { name: 'Import' }).click();
    const err = page.locator('#dockerCompose-error');
    await err.waitFor();
    assert.match(await err.innerText(), /docker-compose\.yml.*web.*no_such_key/);
    assert.equal(await page.locator('#dockerCompose').getAttribute('aria-invalid'), 'true');
    await shot('import-error');
    assert.equal((await api<{ data: unknown[] }>('GET', '/v1/stacks')).body.data.length, 0, 'nothing half-created');

    await page.getByLabel('docker-compose.yml', { exact: true }).fill('web:\n  image: nginx:1.25\n');
    await page.getByRole('button', { name: 'Import' }).click();
    await page.locator('tr[data-service="web"]').waitFor();
    assert.match(page.url(), /#\/stacks\/\S+/);
  });

  test('catalog questions of rancher-compose.yml become a form; a required one left empty is refused at its input', async () => {
    const back = page.url();
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Stacks' }).click();
    await page.getByLabel('Stack name').fill('cat');
    await page.getByLabel('docker-compose.yml', { exact: true }).fill('app:\n  image: "nginx:${TAG}"\n  environment:\n    MODE: "${MODE}"\n');
    await page
      .getByLabel('rancher-compose.yml (optional)', { exact: true })
      .fill('.catalog:\n  name: demo\n  version: 1.0.0\n  questions:\n    - variable: TAG\n      label: Image tag\n      required: true\n      type: string\n    - variable: MODE\n      type: enum\n      options: [a, b]\n      default: b\n');
    const tag = page.getByLabel('Image tag *');
    await tag.waitFor();
    assert.equal(await page.locator('#answer-MODE').inputValue(), 'b', 'the default is preselected');
    await page.getByRole('button', { name: 'Import' }).click();
    const err = page.locator('#answer-TAG-error');
    await err.waitFor();
    assert.match(await err.innerText(), /"TAG".*required/);
    await shot('import-questions');
    await tag.fill('1.27');
    await page.locator('#answer-MODE').selectOption('a');
    await page.getByRole('button', { name: 'Import' }).click();
    await page.locator('tr[data-service="app"]').waitFor();
    const app = (await api<{ data: { launchConfig: { image: string; environment: Record<string, string> } }[] }>('GET', '/v1/services?name=app')).body.data[0]!;
    assert.equal(app.launchConfig.image, 'nginx:1.27');
    assert.equal(app.launchConfig.environment.MODE, 'a');
    // Back to the web stack (a hash change: the same document).
    await page.evaluate(`location.hash = ${JSON.stringify(new URL(back).hash)}`);
    await page.locator('tr[data-service="web"]').waitFor();
  });

  test('scale 1 → 3 → 1: the containers follow in the page without a reload', async () => {
    const svc = page.locator('tr[data-service="web"]');
    const containers = page.getByRole('list', { name: 'containers of web' }).locator('li');
    await assertEventually(async () => assert.equal(await containers.count(), 1));
    // A marker in the page's global scope: a reload would drop it.
    await page.evaluate('globalThis.__sameDocument = true');
    await svc.getByRole('button', { name: 'scale web up' }).click();
    await assertEventually(async () => assert.equal(await svc.getByLabel('Scale of web').inputValue(), '2'));
    await svc.getByRole('button', { name: 'scale web up' }).click();
    await assertEventually(async () => assert.equal(await containers.count(), 3));
    await shot('stack-scaled');
    const apiScale = await api<{ data: { scale: number }[] }>('GET', '/v1/services?name=web');
    assert.equal(apiScale.body.data[0]?.scale, 3);
    await svc.getByRole('button', { name: 'scale web down' }).click();
    await assertEventually(async () => assert.equal(await svc.getByLabel('Scale of web').inputValue(), '2'));
    await svc.getByRole('button', { name: 'scale web down' }).click();
    await assertEventually(async () => assert.equal(await containers.count(), 1));
    assert.equal(await page.evaluate('globalThis.__sameDocument'), true, 'no reload');
  });

  test('upgrade to a new image shows its progress; roll back returns to the old image; a config change is an upgrade too', async () => {
    const svc = page.locator('tr[data-service="web"]');
    await svc.getByLabel('New image of web').fill('nginx:1.26');
    await svc.getByRole('button', { name: 'Upgrade' }).click();
    const progress = svc.locator('.progress');
    await progress.waitFor();
    assert.match(await progress.innerText(), /Upgrad(ing|ed)/);
    await assertEventually(async () => assert.match(await svc.innerText(), /nginx:1\.26/));
    await shot('upgrade');
    const during = await api<{ data: { state: string; launchConfig: { image: string } }[] }>('GET', '/v1/services?name=web');
    assert.match(during.body.data[0]!.state, /^upgrad/);
    await svc.getByRole('button', { name: 'Roll back' }).click();
    await assertEventually(async () => {
      const s = (await api<{ data: { state: string; launchConfig: { image: string } }[] }>('GET', '/v1/services?name=web')).body.data[0]!;
      assert.equal(s.launchConfig.image, 'nginx:1.25');
      assert.equal(await svc.locator('.progress').count(), 0);
    });
    assert.match(await svc.innerText(), /nginx:1\.25/);

    // A config change (no new image): the launch config JSON is merged over the current one; a key the
    // API does not take is refused with its field; bad JSON is refused before anything is sent.
    await svc.getByText('Config changes', { exact: true }).click();
    const cfg = svc.getByLabel(/^Launch config changes/);
    await cfg.fill('{"environment": ');
    await svc.getByRole('button', { name: 'Upgrade' }).click();
    assert.match(await svc.getByRole('alert').innerText(), /must be a JSON object/);
    await cfg.fill('{"no_such_key": 1}');
    await svc.getByRole('button', { name: 'Upgrade' }).click();
    await assertEventually(async () => assert.match(await svc.getByRole('alert').innerText(), /no_such_key/));
    await cfg.fill('{"environment": {"MODE": "blue"}}');
    await svc.getByRole('button', { name: 'Upgrade' }).click();
    await assertEventually(async () => {
      const s = (await api<{ data: { state: string; launchConfig: { image: string; environment: Record<string, string> } }[] }>('GET', '/v1/services?name=web')).body.data[0]!;
      assert.equal(s.launchConfig.environment.MODE, 'blue');
      assert.equal(s.launchConfig.image, 'nginx:1.25', 'the image stays');
    });
    await svc.getByRole('button', { name: 'Finish upgrade' }).click();
    await assertEventually(async () => assert.equal(await svc.locator('.progress').count(), 0));
  });

  test('"View in API" shows the resource JSON with its links, which lead on', async () => {
    await page.locator('tr[data-service="web"]').getByRole('link', { name: 'View in API' }).click();
    const json = page.locator('pre.json');
    await json.waitFor();
    const text = await json.innerText();
    const doc = JSON.parse(text) as { type: string; name: string; links: Record<string, string> };
    assert.equal(doc.type, 'service');
    assert.equal(doc.name, 'web');
    assert.ok(doc.links.self);
    await shot('view-in-api');
    // Its links are links: the stack's leads to the stack's own JSON.
    assert.ok(doc.links.stack, 'a service links its stack');
    await json.locator('a', { hasText: doc.links.stack }).first().click();
    await page.waitForURL(/#\/api\/v1\/stacks\//);
    await assertEventually(async () => assert.match(await page.locator('pre.json').innerText(), /"type": "stack"/));
  });

  test('balancers: a certificate added in the form, then a balancer using it, show their rules and certificates live', async () => {
    await page.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Balancers' }).click();
    await page.getByText('No balancers').waitFor();
    const c = testCertificate('www', 'www.example.test', ['api.example.test']);
    await page.getByLabel('Name', { exact: true }).fill('www');
    await page.getByLabel('Certificate (PEM)').fill(c.cert);
    await page.getByLabel(/^Private key/).fill('not a key');
    await page.getByRole('button', { name: 'Add certificate' }).click();
    await page.getByRole('form', { name: 'Add a certificate' }).getByRole('alert').waitFor();
    await page.getByLabel(/^Private key/).fill(c.key);
    await page.getByRole('button', { name: 'Add certificate' }).click();
    const row = page.locator('tr[data-certificate="www"]');
    await row.waitFor();
    assert.match(await row.innerText(), /www\.example\.test.*api\.example\.test/s);
    const imported = await api('POST', '/v1/stacks', {
      name: 'edge',
      dockerCompose: 'app:\n  image: nginx:1.25\nlb:\n  image: rancher/lb-service-haproxy:v0.7.15\n  ports:\n    - 443:443\n',
      rancherCompose:
        'lb:\n  lb_config:\n    certs: [www]\n    port_rules:\n      - source_port: 443\n        protocol: https\n        target_port: 80\n        service: app\n        hostname: www.example.test\n        path: /v1\n        priority: 2\n',
    });
    assert.equal(imported.status, 201, JSON.stringify(imported.body));
    const lb = page.locator('article[data-balancer="lb"]');
    await lb.waitFor();
    const rules = await lb.getByRole('table', { name: 'rules of lb' }).innerText();
    assert.match(rules, /443\s+https\s+www\.example\.test\s+\/v1\s+edge\/app\s+80\s+2/);
    assert.match(await lb.innerText(), /Certificates: www/);
    assert.match(await row.innerText(), /\blb\b/, 'the certificate shows who uses it');
    await shot('balancers');
  });

  test('keyboard: Tab reaches the main navigation and Enter opens the page', async () => {
    // A fresh document, so that Tab starts from its top (a hash change would keep the focus where it is).
    await page.goto('about:blank');
    await page.goto(`${srv.url}/#/stacks`);
    await page.getByRole('navigation', { name: 'main' }).waitFor();
    let focused = '';
    for (let i = 0; i < 10 && focused !== 'Hosts'; i++) {
      await page.keyboard.press('Tab');
      focused = (await page.evaluate('document.activeElement?.textContent ?? ""')) as string;
    }
    assert.equal(focused, 'Hosts', 'the Hosts link is reached with Tab');
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/hosts$/);
    await page.locator('tr[data-host="node1"]').waitFor();
  });

  test('a narrow window keeps every page usable; no console errors over the whole run', async () => {
    await page.setViewportSize({ width: 420, height: 800 });
    await page.goto(`${srv.url}/#/stacks`);
    await page.getByRole('navigation', { name: 'main' }).waitFor();
    await shot('stacks-narrow');
    await page.getByRole('link', { name: 'Hosts' }).click();
    await page.locator('tr[data-host="node1"]').waitFor();
    await shot('hosts-narrow');
    assert.deepEqual(problems, []);
  });
});

/** Until the assertions in `fn` hold (the page and the API follow changes asynchronously). */
function assertEventually(fn: () => Promise<void>): Promise<true> {
  return eventually(async () => {
    await fn();
    return true as const;
  }, 10_000, 'the page to show it');
}
