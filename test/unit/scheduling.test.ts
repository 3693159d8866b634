import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constraintsFromLabels, isGlobal } from '../../src/server/scheduling/constraints.js';
import { eligibleHosts, placeUnit, type PlacementHost, type PlacedContainer } from '../../src/server/scheduling/place.js';

const hosts: PlacementHost[] = [
  { id: 'h1', name: 'one', labels: { hostname: 'cassandra1', zone: 'a' }, active: true },
  { id: 'h2', name: 'two', labels: { hostname: 'cassandra2', zone: 'b' }, active: true },
  { id: 'h3', name: 'three', labels: { hostname: 'cassandra3', zone: 'a', ssd: 'true' }, active: true },
];
const ctx = { stackName: 'app', serviceName: 'web' };
const c = (labels: Record<string, string>) => constraintsFromLabels([labels], ctx);

test('hard host label affinity picks the labelled host; impossible ones name the constraint and the hosts', () => {
  assert.deepEqual(placeUnit(hosts, [], c({ 'io.rancher.scheduler.affinity:host_label': 'hostname=cassandra2' }), 's'), { ok: true, hostId: 'h2' });
  const r = placeUnit(hosts, [], c({ 'io.rancher.scheduler.affinity:host_label': 'hostname=nope' }), 's');
  assert.equal(r.ok, false);
  assert.match((r as { reason: string }).reason, /no host has host labels hostname=nope \(active hosts considered: one, two, three\)/);
});

test('host_label with several terms needs all; _ne excludes; _soft prefers', () => {
  const both = eligibleHosts(hosts, [], c({ 'io.rancher.scheduler.affinity:host_label': 'zone=a,ssd=true' }));
  assert.deepEqual(both.hosts.map((h) => h.id), ['h3']);
  const ne = eligibleHosts(hosts, [], c({ 'io.rancher.scheduler.affinity:host_label_ne': 'zone=a' }));
  assert.deepEqual(ne.hosts.map((h) => h.id), ['h2']);
  assert.deepEqual(placeUnit(hosts, [], c({ 'io.rancher.scheduler.affinity:host_label_soft': 'ssd=true' }), 's'), { ok: true, hostId: 'h3' });
  // soft_ne steers away from zone a when possible
  assert.deepEqual(placeUnit(hosts, [], c({ 'io.rancher.scheduler.affinity:host_label_soft_ne': 'zone=a' }), 's'), { ok: true, hostId: 'h2' });
});

test('container label affinity and anti-affinity with ${stack_name}/${service_name}', () => {
  const placed: PlacedContainer[] = [
    { hostId: 'h1', name: 'app-web-1', labels: { 'io.rancher.stack_service.name': 'app/web' }, serviceId: 's' },
    { hostId: 'h2', name: 'db-1', labels: { role: 'db' }, serviceId: 'd' },
  ];
  const anti = c({ 'io.rancher.scheduler.affinity:container_label_ne': 'io.rancher.stack_service.name=${stack_name}/${service_name}' });
  assert.deepEqual(eligibleHosts(hosts, placed, anti).hosts.map((h) => h.id), ['h2', 'h3']);
  assert.deepEqual(placeUnit(hosts, placed, c({ 'io.rancher.scheduler.affinity:container_label': 'role=db' }), 'x'), { ok: true, hostId: 'h2' });
  assert.deepEqual(eligibleHosts(hosts, placed, c({ 'io.rancher.scheduler.affinity:container': 'db-1' })).hosts.map((h) => h.id), ['h2']);
});

test('spread: with no constraints, containers of a service go to the host with fewest of them', () => {
  const placed: PlacedContainer[] = [
    { hostId: 'h1', name: 'a', labels: {}, serviceId: 's' },
    { hostId: 'h2', name: 'b', labels: {}, serviceId: 's' },
  ];
  assert.deepEqual(placeUnit(hosts, placed, c({}), 's'), { ok: true, hostId: 'h3' });
});

test('inactive hosts are never chosen; bad labels are rejected with the label named', () => {
  const down = hosts.map((h) => ({ ...h, active: h.id === 'h2' }));
  assert.deepEqual(placeUnit(down, [], c({}), 's'), { ok: true, hostId: 'h2' });
  assert.equal(placeUnit(hosts.map((h) => ({ ...h, active: false })), [], c({}), 's').ok, false);
  assert.throws(() => c({ 'io.rancher.scheduler.affinity:host_label': 'novalue' }), /"novalue" is not key=value/);
  assert.throws(() => c({ 'io.rancher.scheduler.affinity:hostlabel': 'a=b' }), /unknown scheduling label/);
  assert.equal(isGlobal({ 'io.rancher.scheduler.global': 'true' }), true);
  assert.equal(isGlobal({}), false);
});
