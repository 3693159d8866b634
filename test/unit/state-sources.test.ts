// mergeStateSources: the Docker runtime's and the balancer controller's container reports as the one
// source the agent drains (src/cli/host-agent.ts wraps it in the health monitor). Undefined sources are
// skipped, a single source is passed as is, reports are drained from every source in order, a listener
// is registered on every source, and found containers (adoption) come from and go back to the sources
// that handle them only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/common/log.js';
import type { ContainerStateSource } from '../../src/agent/agent.js';
import type { AdoptRequest, ContainerReport, FoundAnswer } from '../../src/model/reports.js';
import { mergeStateSources } from '../../src/agent/state-sources.js';
import { HealthMonitor } from '../../src/agent/capabilities/health/monitor.js';

/** A source holding reports (and found containers, when `found` is given) until drained. */
class FakeSource implements ContainerStateSource {
  private reports: ContainerReport[] = [];
  private readonly listeners: (() => void)[] = [];
  readonly answers: FoundAnswer[][] = [];
  private found: AdoptRequest[] | undefined;
  drainFound?: () => AdoptRequest[];
  foundAnswered?: (answers: FoundAnswer[]) => void;

  constructor(found?: AdoptRequest[]) {
    this.found = found;
    if (found) {
      this.drainFound = () => {
        const out = this.found ?? [];
        this.found = [];
        return out;
      };
      this.foundAnswered = (answers) => void this.answers.push(answers);
    }
  }

  push(...rs: ContainerReport[]): void {
    this.reports.push(...rs);
    for (const cb of this.listeners) cb();
  }

  drainReports(): ContainerReport[] {
    const out = this.reports;
    this.reports = [];
    return out;
  }

  onReports(cb: () => void): void {
    this.listeners.push(cb);
  }
}

const found = (externalId: string): AdoptRequest => ({ externalId, name: `n-${externalId}`, image: 'nginx', labels: {} });

test('undefined sources are skipped: none is undefined, one is passed as is', () => {
  assert.equal(mergeStateSources(), undefined);
  assert.equal(mergeStateSources(undefined, undefined), undefined);
  const a = new FakeSource();
  assert.equal(mergeStateSources(undefined, a), a);
  assert.equal(mergeStateSources(a, undefined), a);
  // Undefined among several is skipped too.
  const b = new FakeSource();
  const m = mergeStateSources(a, undefined, b);
  assert.ok(m);
  a.push({ id: 'c1', state: 'running' });
  b.push({ id: 'lb1', state: 'error', message: 'HAProxy is not serving' });
  assert.deepEqual(m.drainReports(), [
    { id: 'c1', state: 'running' },
    { id: 'lb1', state: 'error', message: 'HAProxy is not serving' },
  ]);
});

test('reports are drained from every source, in the order of the sources, once', () => {
  const runtime = new FakeSource();
  const balancer = new FakeSource();
  const m = mergeStateSources(runtime, balancer);
  assert.ok(m);
  assert.deepEqual(m.drainReports(), []);
  balancer.push({ id: 'lb1', state: 'running', message: '' });
  runtime.push({ id: 'c1', state: 'running', startCount: 1 }, { id: 'c2', state: 'stopped', exitCode: 0 });
  assert.deepEqual(m.drainReports(), [
    { id: 'c1', state: 'running', startCount: 1 },
    { id: 'c2', state: 'stopped', exitCode: 0 },
    { id: 'lb1', state: 'running', message: '' },
  ]);
  assert.deepEqual(m.drainReports(), [], 'drained: nothing twice');
  balancer.push({ id: 'lb1', state: 'removed' });
  assert.deepEqual(m.drainReports(), [{ id: 'lb1', state: 'removed' }]);
});

test('a listener is registered on every source: either one says when reports are waiting', () => {
  const runtime = new FakeSource();
  const balancer = new FakeSource();
  const m = mergeStateSources(runtime, undefined, balancer);
  assert.ok(m);
  const calls: string[] = [];
  m.onReports(() => calls.push('first'));
  m.onReports(() => calls.push('second'));
  runtime.push({ id: 'c1', state: 'running' });
  assert.deepEqual(calls, ['first', 'second']);
  balancer.push({ id: 'lb1', state: 'running' });
  assert.deepEqual(calls, ['first', 'second', 'first', 'second']);
});

test('found containers: drained from and answered to the sources that handle adoption only', () => {
  const plain = new FakeSource();
  const m0 = mergeStateSources(plain, new FakeSource());
  assert.ok(m0);
  assert.equal(m0.drainFound, undefined, 'no source adopts: no drainFound');
  assert.equal(m0.foundAnswered, undefined, 'no source adopts: no foundAnswered');

  const balancer = new FakeSource();
  const runtime = new FakeSource([found('d1'), found('d2')]);
  const m = mergeStateSources(balancer, runtime);
  assert.ok(m?.drainFound && m.foundAnswered);
  assert.deepEqual(
    m.drainFound().map((f) => f.externalId),
    ['d1', 'd2'],
  );
  assert.deepEqual(m.drainFound(), []);
  const answers: FoundAnswer[] = [{ externalId: 'd1', id: '1i5', primaryIpAddress: '10.42.0.5' }, { externalId: 'd2', error: 'name in use' }];
  m.foundAnswered(answers);
  assert.deepEqual(runtime.answers, [answers]);
  assert.deepEqual(balancer.answers, [], 'a source without adoption is not told');

  // Two adopting sources: found containers from both, in order; the answers go to both.
  const r1 = new FakeSource([found('x1')]);
  const r2 = new FakeSource([found('y1')]);
  const m2 = mergeStateSources(r1, plain, r2);
  assert.ok(m2?.drainFound && m2.foundAnswered);
  assert.deepEqual(
    m2.drainFound().map((f) => f.externalId),
    ['x1', 'y1'],
  );
  m2.foundAnswered([{ externalId: 'x1', id: '1i9' }]);
  assert.deepEqual(r1.answers, [[{ externalId: 'x1', id: '1i9' }]]);
  assert.deepEqual(r2.answers, [[{ externalId: 'x1', id: '1i9' }]]);
});

test('as the host agent uses it: wrapped by the health monitor, with and without a Docker runtime', async () => {
  const health = new HealthMonitor({ log: silentLogger() });
  try {
    const runtime = new FakeSource([found('d1')]);
    const balancer = new FakeSource();
    const src = health.wrap(mergeStateSources(runtime, balancer));
    let told = 0;
    src.onReports(() => told++);
    runtime.push({ id: 'c1', state: 'running', startCount: 1 });
    balancer.push({ id: 'lb1', state: 'error', message: 'HAProxy cannot run on this host' });
    assert.equal(told, 2);
    assert.deepEqual(src.drainReports(), [
      { id: 'c1', state: 'running', startCount: 1 },
      { id: 'lb1', state: 'error', message: 'HAProxy cannot run on this host' },
    ]);
    assert.deepEqual(src.drainFound?.().map((f) => f.externalId), ['d1']);
    src.foundAnswered?.([{ externalId: 'd1', id: '1i1' }]);
    assert.deepEqual(runtime.answers, [[{ externalId: 'd1', id: '1i1' }]]);

    // No Docker runtime on the host: the balancer's reports alone still reach the agent.
    const lbOnly = new FakeSource();
    const src2 = health.wrap(mergeStateSources(undefined, lbOnly));
    let told2 = 0;
    src2.onReports(() => told2++);
    lbOnly.push({ id: 'lb2', state: 'running', message: '' });
    assert.equal(told2, 1);
    assert.deepEqual(src2.drainReports(), [{ id: 'lb2', state: 'running', message: '' }]);
    assert.equal(src2.drainFound, undefined);
  } finally {
    await health.stop();
  }
});
