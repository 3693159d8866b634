// Catalog answers files: the Rancher CLI's KEY=VALUE form (quotes, multi-line values) and YAML/JSON maps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAnswers } from '../../src/cli/answers.js';
import { ValidationError } from '../../src/common/errors.js';

test('KEY=VALUE lines as the Rancher CLI wrote them: comments, export, quotes, multi-line values', () => {
  const text = [
    '# answers for jenkins',
    'PORT=8080',
    'export ADMIN=admin ',
    'EMPTY=',
    'PLUGINS="git',
    'ldap',
    'credentials"',
    "LITERAL='a \\n $HOME \"x\"'",
    'ESCAPED="a \\"quote\\", a \\\\ and a \\$ sign\\nnext"',
    'URL=http://x/?a=b#frag',
    'TRAIL="v"   # comment',
    '',
  ].join('\n');
  assert.deepEqual(parseAnswers('answers.txt', text), {
    PORT: '8080',
    ADMIN: 'admin',
    EMPTY: '',
    PLUGINS: 'git\nldap\ncredentials',
    LITERAL: 'a \\n $HOME "x"',
    ESCAPED: 'a "quote", a \\ and a $ sign\nnext',
    URL: 'http://x/?a=b#frag',
    TRAIL: 'v',
  });
});

test('YAML and JSON maps; a multi-line value with a colon in it stays in the KEY=VALUE form', () => {
  assert.deepEqual(parseAnswers('a.yml', 'PORT: 8080\nDEBUG: true\nNAME: web\n'), { PORT: '8080', DEBUG: 'true', NAME: 'web' });
  assert.deepEqual(parseAnswers('a.json', '{"PORT": 8080, "X": null}'), { PORT: '8080', X: '' });
  assert.deepEqual(parseAnswers('a.txt', 'CONF="key: value\nother: 1"\n'), { CONF: 'key: value\nother: 1' });
  assert.deepEqual(parseAnswers('a.txt', '# nothing\n\n'), {});
});

test('bad answers files are refused with the file and line', () => {
  const bad = (text: string, re: RegExp) =>
    assert.throws(() => parseAnswers('answers.txt', text), (e: unknown) => e instanceof ValidationError && re.test(e.message));
  bad('A=1\nnot a line\n', /^answers\.txt:2: expected KEY=VALUE/);
  bad('A=1\nB="open\nstill open\n', /^answers\.txt:2: the value of B opens a double quote that is never closed/);
  bad("A='x' y\n", /^answers\.txt:1: unexpected "y" after the quoted value of A/);
  bad('- a\n- b\n', /expected KEY=VALUE lines or a map/);
  bad('A: {b: 1}\n', /answer "A" must be a string/);
  bad('A: [\n', /neither KEY=VALUE lines nor a YAML\/JSON map/);
});

test('a long quoted value parses in linear time (no backtracking on the open quote)', () => {
  const text = `A="${'x'.repeat(200_000)}\n`;
  assert.throws(() => parseAnswers('big.txt', text), /never closed/);
  const ok = `A="${'y\n'.repeat(50_000)}"\n`;
  assert.equal(parseAnswers('big.txt', ok).A?.length, 100_000);
});
