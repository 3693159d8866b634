// balancerReports (pure): what a host reports for its balancer containers. An instance the controller runs
// is reported in its state (running, with the rules left out as the message; error, with HAProxy's
// message), a container wanted stopped or removed with no instance any more is stopped / removed, the
// `unavailable` reason marks every balancer container wanted running here as error. Containers of other
// hosts, of other services, sidekicks and adopted containers are not the balancer's to report.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { EnvState } from '../../src/model/state.js';
import { LaunchConfig, type Service } from '../../src/model/resources.js';
import { ContainerReport } from '../../src/model/reports.js';
import { balancerReports } from '../../src/agent/capabilities/balancer/reports.js';
import type { BalancerInstanceState } from '../../src/agent/capabilities/balancer/controller.js';
import { container, env, put, service } from '../helpers/state-fixtures.js';

function lb(id: string): Service {
  return service(id, `lb-${id}`, { kind: 'loadBalancerService', launchConfig: LaunchConfig.parse({ image: 'rancher/lb-service-haproxy:v0.7.9' }) });
}


const states = (...xs: BalancerInstanceState[]): Map<string, BalancerInstanceState> => new Map(xs.map((x) => [x.id, x]));

/** Every report is one the control plane accepts (src/model/reports.ts). */
function valid(rs: ContainerReport[]): ContainerReport[] {
  for (const r of rs) ContainerReport.parse(r);
  return rs;
}

/** One host with a balancer service and an app service; balancer containers in every desired state. */
function fixture(): EnvState {
  const st = env();
  put(
    st,
    service('1s1', 'app'),
    lb('1s9'),
    container('lb-run', '1s9', '1h1', '10.42.0.9'),
    container('lb-err', '1s9', '1h1', '10.42.0.10'),
    container('lb-stop', '1s9', '1h1', '10.42.0.11', { desiredState: 'stopped' }),
    container('lb-rm', '1s9', '1h1', '10.42.0.12', { desiredState: 'removed' }),
    container('lb-new', '1s9', '1h1', '10.42.0.13'), // wanted running, the controller has not reached it
    container('lb-other', '1s9', '1h2', '10.42.0.14'), // another host's instance
    container('lb-other-stop', '1s9', '1h2', '10.42.0.15', { desiredState: 'stopped' }),
    container('app1', '1s1', '1h1', '10.42.1.1'), // not a balancer: the runtime's to report
    container('app2', '1s1', '1h1', '10.42.1.2', { desiredState: 'stopped' }),
    container('lb-side', '1s9', '1h1', '10.42.0.16', { launchConfigName: 'sidekick', desiredState: 'stopped' }), // a sidekick is a Docker container
    container('lb-adopt', '1s9', '1h1', '10.42.0.17', { adopted: true, desiredState: 'stopped' }), // started by hand: the runtime's
    container('loose', null, '1h1', '10.42.0.18', { desiredState: 'stopped' }), // no service
  );
  return st;
}

test('running and error instances, stopped and removed containers; others left out; sorted by id', () => {
  const st = fixture();
  const got = valid(
    balancerReports(
      st,
      '1h1',
      states({ id: 'lb-run', state: 'running' }, { id: 'lb-err', state: 'error', message: '[ALERT] cannot bind socket [10.42.0.10:80]' }),
    ),
  );
  assert.deepEqual(got, [
    { id: 'lb-err', state: 'error', message: '[ALERT] cannot bind socket [10.42.0.10:80]' },
    { id: 'lb-rm', state: 'removed' },
    { id: 'lb-run', state: 'running', message: '' },
    { id: 'lb-stop', state: 'stopped', message: '' },
  ]);
});

test('an error instance without a message says HAProxy is not serving; its warnings do not hide the error', () => {
  const st = fixture();
  const got = balancerReports(st, '1h1', states({ id: 'lb-err', state: 'error', warnings: ['rule 2: no target'] }));
  assert.deepEqual(
    got.find((r) => r.id === 'lb-err'),
    { id: 'lb-err', state: 'error', message: 'HAProxy is not serving' },
  );
});

test('a running instance with rules left out says which; the message is bounded', () => {
  const st = fixture();
  const got = balancerReports(st, '1h1', states({ id: 'lb-run', state: 'running', warnings: ['rule 1: service 1s7 not found', 'certificate x missing'] }));
  assert.deepEqual(
    got.find((r) => r.id === 'lb-run'),
    { id: 'lb-run', state: 'running', message: 'rules left out: rule 1: service 1s7 not found; certificate x missing' },
  );
  const long = balancerReports(st, '1h1', states({ id: 'lb-err', state: 'error', message: 'x'.repeat(5000) }, { id: 'lb-run', state: 'running', warnings: ['w'.repeat(5000)] }));
  assert.equal(long.find((r) => r.id === 'lb-err')?.message, 'x'.repeat(1000));
  assert.equal(long.find((r) => r.id === 'lb-run')?.message?.length, 1000);
  assert.ok(long.find((r) => r.id === 'lb-run')?.message?.startsWith('rules left out: www'));
});

test('an instance is reported in its own state whatever the record asks (HAProxy still up while it stops)', () => {
  const st = fixture();
  const got = balancerReports(st, '1h1', states({ id: 'lb-stop', state: 'running' }, { id: 'lb-rm', state: 'error', message: 'stopping' }));
  assert.deepEqual(got.find((r) => r.id === 'lb-stop'), { id: 'lb-stop', state: 'running', message: '' });
  assert.deepEqual(got.find((r) => r.id === 'lb-rm'), { id: 'lb-rm', state: 'error', message: 'stopping' });
});

test('an instance gone: the container is reported stopped or removed as its record asks, nothing once the record is gone', () => {
  const st = fixture();
  const before = balancerReports(st, '1h1', states({ id: 'lb-run', state: 'running' }));
  assert.deepEqual(before.find((r) => r.id === 'lb-run'), { id: 'lb-run', state: 'running', message: '' });
  // The control plane asks for its removal; the controller closes the HAProxy (no instance state any more).
  put(st, container('lb-run', '1s9', '1h1', '10.42.0.9', { desiredState: 'removed' }));
  assert.deepEqual(balancerReports(st, '1h1', states()).find((r) => r.id === 'lb-run'), { id: 'lb-run', state: 'removed' });
  // The record purged from the state: nothing more to say about it.
  st.containers.delete('lb-run');
  assert.equal(balancerReports(st, '1h1', states({ id: 'lb-run', state: 'running' })).find((r) => r.id === 'lb-run'), undefined);
  // Its service gone (not a balancer any more as far as this host can tell): the balancer does not report it.
  st.services.delete('1s9');
  assert.deepEqual(balancerReports(st, '1h1', states({ id: 'lb-err', state: 'running' })), []);
});

test('unavailable: every balancer container of this host wanted running is an error with the reason', () => {
  const st = fixture();
  const why = 'HAProxy cannot run on this host (`haproxy -v`: not found); install it or set agent.haproxy (DROVER_AGENT_HAPROXY)';
  const got = valid(balancerReports(st, '1h1', states(), why));
  assert.deepEqual(got, [
    { id: 'lb-err', state: 'error', message: why },
    { id: 'lb-new', state: 'error', message: why },
    { id: 'lb-rm', state: 'removed' },
    { id: 'lb-run', state: 'error', message: why },
    { id: 'lb-stop', state: 'stopped', message: '' },
  ]);
  // Another host's containers are never this host's to report, unavailable or not.
  assert.deepEqual(
    balancerReports(st, '1h2', states(), why),
    [
      { id: 'lb-other', state: 'error', message: why },
      { id: 'lb-other-stop', state: 'stopped', message: '' },
    ],
  );
  assert.deepEqual(balancerReports(st, '1h3', states(), why), []);
});

test('without unavailable, a container wanted running with no instance yet is left out', () => {
  const st = fixture();
  const got = balancerReports(st, '1h1', states());
  assert.deepEqual(
    got.map((r) => r.id),
    ['lb-rm', 'lb-stop'],
  );
  // Instance states for containers of another host (or unknown ids) are ignored.
  assert.deepEqual(
    balancerReports(st, '1h1', states({ id: 'lb-other', state: 'running' }, { id: 'ghost', state: 'running' })).map((r) => r.id),
    ['lb-rm', 'lb-stop'],
  );
});

test('no HAProxy here: the controller health and reports follow every revision of the state it holds', async () => {
  const { BalancerController } = await import('../../src/agent/capabilities/balancer/controller.js');
  const { silentLogger } = await import('../../src/common/log.js');
  const { applyChanges } = await import('../../src/model/state.js');
  const st = env();
  st.revision = 1;
  put(st, lb('1s9'), container('lb-a', '1s9', '1h1', '10.42.0.9'));
  const ctl = new BalancerController({ log: silentLogger(), dataDir: '/nonexistent', unavailable: 'no haproxy' });
  await ctl.reconcile(st, { revision: 1, full: true, touched: [], environmentChanged: true }, { hostId: '1h1', host: undefined });
  assert.equal(ctl.health()?.message, '1 balancer instance(s) cannot run: no haproxy');
  assert.deepEqual(ctl.states.drainReports().map((r) => r.id), ['lb-a']);
  // The state object changes in place (the agent applies the next revision before the controllers run).
  applyChanges(st, 2, [{ op: 'upsert', kind: 'container', id: 'lb-b', data: container('lb-b', '1s9', '1h1', '10.42.0.10') }]);
  assert.equal(ctl.health()?.message, '2 balancer instance(s) cannot run: no haproxy');
  applyChanges(st, 3, [{ op: 'upsert', kind: 'container', id: 'lb-a', data: container('lb-a', '1s9', '1h1', '10.42.0.9', { desiredState: 'stopped' }) }]);
  assert.equal(ctl.health()?.message, '1 balancer instance(s) cannot run: no haproxy');
  await ctl.reconcile(st, { revision: 3, full: false, touched: [], environmentChanged: false }, { hostId: '1h1', host: undefined });
  assert.deepEqual(ctl.states.drainReports().map((r) => [r.id, r.state]), [['lb-a', 'stopped'], ['lb-b', 'error']]);
  await ctl.stop();
});
