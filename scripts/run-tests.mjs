#!/usr/bin/env node
// Runs every test file under test/ with node:test (Node 20 has no --test glob support).
// Usage: node scripts/run-tests.mjs [substring-filter ...]
// Two groups: everything else (DROVER_TEST_CONCURRENCY files at once, default 2), then the heavy ones alone.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = walk('test').sort().filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const concurrency = process.env.DROVER_TEST_CONCURRENCY ?? '2';
// The multi-host lab tests and the zero-drop load tests saturate this machine's 2 cores on their own (3
// dockerds, 3 agents, a control plane, HAProxy and a 500 req/s client): they run one at a time, after the
// rest, so that a load test never shares the machine with another lab.
const heavy = (f) => /(^|\/)lab-|zero-drop/.test(f);
const groups = [
  { files: files.filter((f) => !heavy(f)), concurrency },
  { files: files.filter(heavy), concurrency: '1' },
].filter((g) => g.files.length > 0);
let status = 0;
for (const g of groups) {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${g.concurrency}`, '--test-reporter=spec', ...g.files],
    { stdio: 'inherit' },
  );
  if ((r.status ?? 1) !== 0) status = r.status ?? 1;
}
process.exit(status);
