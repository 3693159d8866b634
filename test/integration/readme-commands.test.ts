// Every `drover …` command the README shows exists with the options it uses: for each command line of the
// README's sh blocks, `drover <command> --help` exits 0 and lists every flag the line passes. (What the
// commands do is tested where they are implemented; this keeps the README from drifting from the CLI.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runCli } from '../helpers/cli.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The `drover …` invocations of the README's sh blocks, comments cut, `a; b` split. */
export function readmeCommands(text: string): string[][] {
  const out: string[][] = [];
  for (const block of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const raw of (block[1] ?? '').split('\n')) {
      const line = raw.replace(/\s#.*$/, '');
      for (const part of line.split(/;|&&|\|\|/)) {
        const words = part.trim().split(/\s+/);
        const at = words.findIndex((w) => w === 'drover' || w.endsWith('/bin/drover'));
        if (at >= 0 && (at === 0 || words[at - 1] === 'sudo' || /^[A-Z_]+=/.test(words[at - 1] ?? ''))) out.push(words.slice(at + 1));
      }
    }
  }
  return out;
}

test('the README shows drover commands (the parser finds them)', () => {
  const cmds = readmeCommands(README);
  assert.ok(cmds.length >= 15, `found ${cmds.length}`);
  assert.ok(cmds.some((c) => c[0] === 'stack' && c[1] === 'up' && c.includes('--upgrade')));
});

test('every drover command in the README exists and takes the flags it is shown with', { timeout: 240_000 }, async () => {
  const cmds = readmeCommands(README);
  const byPath = new Map<string, Set<string>>();
  for (const c of cmds) {
    const path: string[] = [];
    for (const w of c) {
      if (!/^[a-z][a-z-]*$/.test(w) || path.length === 2) break;
      path.push(w);
    }
    // `stop|start|restart|rm` in the README stands for four commands.
    const first = c[0] ?? '';
    const heads = first.includes('|') ? first.split('|') : [path[0] ?? ''];
    for (const head of heads) {
      const p = [head, ...path.slice(1)].filter(Boolean);
      const key = p.join(' ');
      const flags = byPath.get(key) ?? new Set<string>();
      for (const w of c) if (/^--?[a-zA-Z]/.test(w)) flags.add(w.split('=')[0] as string);
      byPath.set(key, flags);
    }
  }
  const problems: string[] = [];
  await Promise.all(
    [...byPath].map(async ([key, flags]) => {
      const r = await runCli([...key.split(' ').filter(Boolean), '--help'], {});
      if (r.status !== 0) {
        problems.push(`drover ${key} --help: exit ${r.status}: ${r.stderr.trim().split('\n')[0] ?? ''}`);
        return;
      }
      // An unknown command shows the parent's help: the usage line says which command answered.
      const usage = /^Usage: drover ((?:[a-z][a-z-]* ?)*?) ?(\[options\]|\[command\]|<|$)/m.exec(r.stdout)?.[1]?.trim() ?? '';
      if (!usage || (usage !== key && !key.startsWith(`${usage} `))) {
        problems.push(`drover ${key}: no such command (its --help is that of "drover ${usage}")`);
        return;
      }
      for (const f of flags) if (!new RegExp(`(^|[\\s,])${f.replace(/[-]/g, '\\-')}([\\s,=<[]|$)`, 'm').test(r.stdout)) problems.push(`drover ${key}: the README uses ${f}, --help does not list it`);
    }),
  );
  assert.deepEqual(problems, []);
});
