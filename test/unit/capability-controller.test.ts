import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ControllerManager } from '../../src/agent/controller/manager.js';
import { capabilityController } from '../../src/agent/capabilities/adapter.js';
import { FileApplier } from '../../src/agent/capabilities/file-applier.js';
import type { Capability } from '../../src/agent/capabilities/capability.js';
import { emptyState, fullDelta, type EnvState } from '../../src/model/state.js';
import { silentLogger } from '../../src/common/log.js';
import { cleanup, tempDir } from '../helpers/server.js';

const run = promisify(execFile);

function stateWith(names: string[], revision: number): EnvState {
  const st = emptyState({ id: '1a1', uuid: 'u', name: 'Default', description: '', state: 'active', network: { subnet: '10.42.0.0/16', dnsScope: 'linked', hostDnsView: false, overlay: 'ipsec', ipsecAuth: 'psk', vxlanVni: 42 }, created: '' });
  st.revision = revision;
  for (const [i, n] of names.entries()) {
    st.stacks.set(`1st${i}`, { id: `1st${i}`, uuid: `s${i}`, environmentId: '1a1', name: n, description: '', state: 'active', dockerCompose: '', rancherCompose: '', answers: {}, system: false, created: '' });
  }
  return st;
}

test('file applier: validation by a real program gates the swap; the last good file stays in force', async () => {
  const dir = tempDir();
  try {
    const path = join(dir, 'stacks.conf');
    // The validator is a real program run on the candidate file: it rejects files containing "bad".
    const validator = join(dir, 'validate.sh');
    writeFileSync(validator, '#!/bin/sh\nif grep -q bad "$1"; then echo "line 1: bad stack name" >&2; exit 1; fi\n');
    chmodSync(validator, 0o755);
    let swaps = 0;
    const cap: Capability<string> = {
      name: 'stacks-file',
      render: (st) => [...st.stacks.values()].map((s) => `stack ${s.name}`).join('\n') + '\n',
      applier: new FileApplier({
        path,
        validate: async (candidate) => {
          try {
            await run(validator, [candidate]);
          } catch (err) {
            throw new Error(`validation failed: ${String((err as { stderr?: string }).stderr).trim()}`);
          }
        },
        afterSwap: () => {
          swaps++;
          return Promise.resolve();
        },
      }),
    };
    const runner = new ControllerManager([capabilityController(cap)], { log: silentLogger(), resyncMs: 0 });
    const host = { hostId: 'h', host: undefined };
    const update = (st: EnvState) => runner.update(st, fullDelta(st.revision), host);

    let st = await update(stateWith(['web'], 1));
    assert.equal(st['stacks-file']?.ok, true);
    assert.equal(st['stacks-file']?.state, 'ok');
    assert.equal(st['stacks-file']?.revision, 1);
    assert.equal(readFileSync(path, 'utf8'), 'stack web\n');

    st = await update(stateWith(['web', 'bad'], 2));
    assert.equal(st['stacks-file']?.ok, false);
    assert.equal(st['stacks-file']?.state, 'degraded', 'the last good file is in force');
    assert.equal(st['stacks-file']?.lastSuccessRevision, 1);
    assert.match(st['stacks-file']?.error ?? '', /validation failed: line 1: bad stack name/);
    assert.equal(readFileSync(path, 'utf8'), 'stack web\n', 'the last good file stays');
    assert.equal(existsSync(`${path}.candidate`), false, 'no half-written candidate left behind');

    st = await update(stateWith(['web', 'api'], 3));
    assert.equal(st['stacks-file']?.state, 'ok');
    assert.equal(st['stacks-file']?.revision, 3);
    assert.equal(st['stacks-file']?.consecutiveFailures, 0);
    assert.equal(readFileSync(path, 'utf8'), 'stack web\nstack api\n');
    assert.equal(readFileSync(`${path}.last-good`, 'utf8'), 'stack web\n');
    assert.equal(swaps, 2);

    // Same artefact again: nothing is re-applied.
    await update(stateWith(['web', 'api'], 4));
    assert.equal(swaps, 2);
    await runner.close();
  } finally {
    cleanup(dir);
  }
});

test('controllers: a render error is reported without touching the artefact or other capabilities', async () => {
  const applied: string[] = [];
  const broken: Capability<string> = {
    name: 'broken',
    render: () => {
      throw new Error('no host record');
    },
    applier: { apply: (a) => Promise.resolve(void applied.push(`broken:${a}`)) },
  };
  const fine: Capability<number> = { name: 'fine', render: (s) => s.revision, applier: { apply: (a) => Promise.resolve(void applied.push(`fine:${a}`)) } };
  const runner = new ControllerManager([capabilityController(broken), capabilityController(fine)], { log: silentLogger(), resyncMs: 0 });
  const st = await runner.update(stateWith([], 7), fullDelta(7), { hostId: 'h', host: undefined });
  assert.equal(st.broken?.ok, false);
  assert.equal(st.broken?.state, 'failed', 'nothing was ever applied');
  assert.match(st.broken?.error ?? '', /render failed: no host record/);
  assert.equal(st.fine?.ok, true);
  assert.equal(st.fine?.revision, 7);
  assert.deepEqual(applied, ['fine:7']);
  await runner.close();
});
