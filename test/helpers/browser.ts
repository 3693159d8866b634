// The browser tests' common parts: Debian's Chromium driven by playwright-core (no browser download),
// the web UI built from src/ui by the same script as `npm run build`, screenshots kept under
// test-artifacts/ui/, and the page's errors collected (a test ends by asserting there were none).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

const ROOT = new URL('../..', import.meta.url).pathname;
export const CHROMIUM = process.env.DROVER_CHROMIUM ?? '/usr/bin/chromium';
export const ARTIFACTS = join(ROOT, 'test-artifacts', 'ui');

/** Why browser tests cannot run here, or undefined. */
export function browserUnavailable(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `no Chromium at ${CHROMIUM} (apt-get install chromium; scripts/setup.sh --test does)`;
}

/** Builds the UI into `dir` (scripts/build-ui.mjs) and returns it. */
export function buildUi(dir: string): string {
  execFileSync(process.execPath, [join(ROOT, 'scripts/build-ui.mjs'), dir], { stdio: 'inherit' });
  return dir;
}

export function launchBrowser(): Promise<Browser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  // Root in CI: Chromium's sandbox needs a user namespace it cannot have there.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/**
 * Collects uncaught errors, console errors and failed HTTP responses of `page` (as `HTTP <status>
 * <method> <url>`); `allowed` matches the failures a test provokes on purpose (a wrong key's 401, and
 * the console line Chromium writes for it).
 */
export function watchProblems(page: Page, allowed: RegExp[] = []): string[] {
  const problems: string[] = [];
  const add = (p: string) => {
    if (!allowed.some((re) => re.test(p))) problems.push(p);
  };
  page.on('pageerror', (err) => add(`page error: ${err.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') add(`console error: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) add(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  return problems;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The key as the UI keeps it after a login, put in place before the page's scripts run. */
export async function loggedIn(page: Page, key: { accessKey: string; secretKey: string }): Promise<void> {
  await page.addInitScript(`sessionStorage.setItem('drover.session', ${JSON.stringify(JSON.stringify(key))})`);
}
