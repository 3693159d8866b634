// POST /v1/stacks?action=questions: the catalog questions of a rancher-compose file, read and checked as
// an import reads them, before anything is created (what the web UI turns into a form).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer } from '../helpers/server.js';

const RANCHER = `.catalog:
  name: demo
  version: 1.0.0
  questions:
    - variable: TAG
      label: Image tag
      required: true
      type: string
    - variable: MODE
      type: enum
      options: [a, b]
      default: b
web:
  scale: 2
`;

test('stacks ?action=questions answers the questions; bad ones and unknown actions are refused by name; nothing is created', async () => {
  const s = await startTestServer();
  try {
    const r = await s.api<{ type: string; name: string; questions: { variable: string; required: boolean; options?: string[]; default?: string }[] }>('POST', '/v1/stacks?action=questions', { rancherCompose: RANCHER });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.type, 'catalogQuestions');
    assert.equal(r.body.name, 'demo');
    assert.deepEqual(
      r.body.questions.map((q) => [q.variable, q.required, q.default ?? null]),
      [
        ['TAG', true, null],
        ['MODE', false, 'b'],
      ],
    );
    const none = await s.api<{ questions: unknown[] }>('POST', '/v1/stacks?action=questions', { rancherCompose: 'web:\n  scale: 2\n' });
    assert.deepEqual(none.body.questions, []);
    const bad = await s.api<{ fieldName?: string; message: string }>('POST', '/v1/stacks?action=questions', { rancherCompose: '.catalog:\n  questions:\n    - variable: X\n      type: enum\n' });
    assert.equal(bad.status, 422, JSON.stringify(bad.body));
    assert.match(bad.body.message, /rancher-compose\.yml.*enum question needs a non-empty list of options/);
    const unknown = await s.api<{ message: string }>('POST', '/v1/stacks?action=nope', { rancherCompose: '' });
    assert.equal(unknown.status, 422);
    assert.match(unknown.body.message, /no action "nope"/);
    const extra = await s.api('POST', '/v1/stacks?action=questions', { rancherCompose: '', name: 'x' });
    assert.equal(extra.status, 422, 'a field it does not take is refused');
    assert.equal((await s.api<{ data: unknown[] }>('GET', '/v1/stacks')).body.data.length, 0);
  } finally {
    await s.close();
  }
});
