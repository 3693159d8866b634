// Which jobs the API runs in the import worker (src/server/api/offload-jobs.ts): a job's size is the
// containers it creates plus one per 64 bytes of compose text, and the worker takes those over
// OFFLOAD_THRESHOLD — whatever the text's length, a compose file asking for many containers counts them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OFFLOAD_THRESHOLD, jobSize, type Job } from '../../src/server/api/offload-jobs.js';
import { defaultEnvironment } from '../../src/server/domain/environments.js';
import { cleanup, startTestServer, type TestServer } from '../helpers/server.js';

describe('offload: job size against the threshold', () => {
  let t: TestServer;
  let envId: string;
  const stackJob = (dockerCompose: string, rancherCompose: string): Job => ({
    op: 'createStack',
    input: { environmentId: envId, name: 'sized', dockerCompose, rancherCompose },
  });
  /** A comment that brings the compose text to about `bytes` characters. */
  const padding = (bytes: number) => `# ${'x'.repeat(bytes)}\n`;

  before(async () => {
    t = await startTestServer();
    envId = defaultEnvironment(t.srv.store).id;
  });
  after(async () => {
    await t.close();
    cleanup(t.dir);
  });

  it('a small file with few containers runs inline; one asking for many goes to the worker', () => {
    assert.ok(jobSize(t.srv.store, stackJob('web:\n  image: nginx\n', 'web:\n  scale: 2\n')).size <= OFFLOAD_THRESHOLD);
    assert.ok(jobSize(t.srv.store, stackJob('web:\n  image: nginx\n', `web:\n  scale: ${OFFLOAD_THRESHOLD + 1}\n`)).size > OFFLOAD_THRESHOLD);
  });

  it('text just under the threshold on its own still counts its containers', () => {
    // ~0.9 × threshold × 64 bytes: the text alone is under the threshold, the 1000 containers are not.
    const dc = `${padding(Math.floor(OFFLOAD_THRESHOLD * 64 * 0.9))}web:\n  image: nginx\n`;
    const { size } = jobSize(t.srv.store, stackJob(dc, 'web:\n  scale: 1000\n'));
    assert.ok(size > 1000, `size ${size}`);
  });

  it('text over the threshold goes to the worker without being parsed here', () => {
    const dc = `${padding(OFFLOAD_THRESHOLD * 64)}web:\n  image: [unclosed\n`;
    assert.ok(jobSize(t.srv.store, stackJob(dc, '')).size > OFFLOAD_THRESHOLD, 'not parsed: the syntax error is the worker’s to report');
  });
});
